"""Key layout: one hash tag per session, escaping that no id can break out of."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamstate.errors import ConfigError
from streamstate.eventlog.keys import Keyspace, escape, parse_session_tag, session_tag, unescape

HOSTILE = ["*", "?", "[", "]", "{", "}", ":", "\n", "a{b}c", "x:y:z", "{}", "%41", "ü" * 1024, " "]


@given(st.text())
def test_escape_is_injective_and_safe(part: str) -> None:
    escaped = escape(part)
    assert re.fullmatch(r"[A-Za-z0-9\-_.~%]*", escaped)
    assert unescape(escaped) == part


@given(st.lists(st.text(min_size=1), min_size=1, max_size=4))
def test_session_tag_round_trips(parts: list[str]) -> None:
    assert parse_session_tag(session_tag(parts)) == tuple(parts)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_key_of_a_session_has_one_tag(hostile: str) -> None:
    keys = Keyspace("ss").session(("t", hostile))
    for key in (keys.log, keys.idem, keys.view("cps")):
        tags = re.findall(r"\{([^}]*)\}", key)
        assert tags == [keys.tag]
        assert not set("*?[]\n ") & set(key)


def test_distinct_ids_never_share_keys() -> None:
    ks = Keyspace("ss")
    logs = {ks.session(("t", h)).log for h in HOSTILE}
    assert len(logs) == len(HOSTILE)
    # a part containing the separator cannot impersonate two parts
    assert ks.session(("a,b",)).log != ks.session(("a", "b")).log


@pytest.mark.parametrize("bad", ["", ("t", ""), (), ("t", 3)])
def test_bad_session_names_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError):
        Keyspace().session(bad)  # type: ignore[arg-type]


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        Keyspace("a{b}")
