"""The demo behind ``streamstate demo``: a scripted agent and the claims it proves.

:mod:`streamstate.demo.agent` holds the graph (no network, no API keys);
:mod:`streamstate.demo.run` runs it over several threads on a :class:`ValkeySaver` and
checks what the log gives: history, replay, fork, rebuild.
"""
