"""A class that must never be instantiated from stored data under strict msgpack.

It is not on LangGraph's msgpack allow-list; creating one leaves a file behind, so a
test can tell from outside the process that a stored payload was turned into an object.
"""

from __future__ import annotations

from pathlib import Path


class Canary:
    def __init__(self, path: str) -> None:
        Path(path).write_text("instantiated")
        self.path = path
