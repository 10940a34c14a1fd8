"""The cache's pure core: key layout, key forms, TTL arguments, value encoding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from streamstate.adapters import _cache_core as core
from streamstate.errors import CodecError, ConfigError
from streamstate.projections.cache import CACHE_CLEAR, CACHE_SET, CacheKeys

SERDE = JsonPlusSerializer()
KEYS = CacheKeys("p:")

namespaces = st.lists(st.text(), max_size=4).map(tuple)


def _tag(key: str) -> str:
    """The hash tag Valkey would compute the slot from (first ``{...}``, non-empty)."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start)]


@given(namespaces, st.text(), namespaces, st.text())
def test_layout_is_injective(ns1: tuple[str, ...], k1: str, ns2: tuple[str, ...], k2: str) -> None:
    if (ns1, k1) != (ns2, k2):
        assert KEYS.entry(ns1, k1) != KEYS.entry(ns2, k2)
    if ns1 != ns2:
        assert KEYS.index(ns1) != KEYS.index(ns2)
    assert KEYS.entry(ns1, k1) != KEYS.index(ns2)


@given(namespaces, st.text())
def test_a_namespace_shares_one_non_empty_tag_and_no_glob_chars(
    ns: tuple[str, ...], k: str
) -> None:
    entry, index = KEYS.entry(ns, k), KEYS.index(ns)
    assert _tag(entry) == _tag(index) != ""
    assert entry.count("{") == entry.count("}") == 1
    assert re.fullmatch(r"p:\{[A-Za-z0-9\-_.~%/]+\}:e:[A-Za-z0-9\-_.~%]*", entry)


def test_registry_never_equals_a_key_of_any_prefix() -> None:
    a, b = CacheKeys("x:"), CacheKeys("x:namespaces:")
    assert a.registry != b.registry
    assert "{" not in a.registry
    assert not b.entry((), "k").startswith(a.prefix + "{")


@pytest.mark.parametrize(
    ("given", "stored"), [("lg:cache:", "lg:cache:"), ("lg/", "lg/"), ("lg", "lg:")]
)
def test_prefix_gets_a_separator(given: str, stored: str) -> None:
    assert CacheKeys(given).prefix == stored


@pytest.mark.parametrize("bad", ["", "a{b}:", "}"])
def test_prefix_without_braces(bad: str) -> None:
    with pytest.raises(ConfigError):
        CacheKeys(bad)


def test_key_forms() -> None:
    assert core.normalize_key("k") == ((), "k")
    assert core.normalize_key((("a", "b"), "k")) == (("a", "b"), "k")
    assert core.normalize_key(("users", "k")) == (("users",), "k")
    assert core.normalize_key([["a"], "k"]) == (("a",), "k")
    for bad in [1, ("a", "b", "c"), (("a",), 2), ((1,), "k"), None]:
        with pytest.raises(ConfigError):
            core.normalize_key(bad)


def test_get_plan_is_one_mget_keyed_by_the_callers_keys() -> None:
    plan = core.plan_get(KEYS, ["k", (("a",), "k"), [["a"], "j"]])
    assert plan.call is not None and plan.call.args[0] == "MGET"
    assert plan.call.args[1:] == (
        KEYS.entry((), "k"),
        KEYS.entry(("a",), "k"),
        KEYS.entry(("a",), "j"),
    )
    assert plan.keys == ("k", (("a",), "k"), (("a",), "j"))  # the list key is unhashable
    assert core.plan_get(KEYS, []).call is None
    assert core.read_get(core.plan_get(KEYS, []), None, SERDE) == {}


def test_set_plan_groups_by_namespace_in_one_script() -> None:
    call = core.plan_set(
        KEYS,
        {(("a",), "1"): (1, None), (("b",), "2"): (2, 0.25), (("a",), "3"): (3, 0), "4": (4, 5)},
        SERDE,
        default_ttl=None,
    )
    assert call is not None and call.script is CACHE_SET
    assert call.keys == [
        KEYS.registry,
        KEYS.index(("a",)),
        KEYS.entry(("a",), "1"),
        KEYS.entry(("a",), "3"),
        KEYS.index(("b",)),
        KEYS.entry(("b",), "2"),
        KEYS.index(()),
        KEYS.entry((), "4"),
    ]
    enc = core.encode_value
    assert call.args == [
        3,
        2,
        -1,
        enc(SERDE, 1),
        0,
        b"",
        1,
        250,
        enc(SERDE, 2),
        1,
        5000,
        enc(SERDE, 4),
    ]
    assert core.plan_set(KEYS, {}, SERDE, None) is None


@pytest.mark.parametrize(
    ("ttl", "default", "ms"),
    [
        (None, None, core.NEVER),
        (None, 2.5, 2500),
        (0.0001, None, 1),
        (0.2, 60, 200),
        (0, 60, core.EXPIRED),
        (-3, None, core.EXPIRED),
        (float("inf"), None, core.NEVER),
    ],
)
def test_entry_ttl(ttl: float | None, default: float | None, ms: int) -> None:
    assert core.entry_ms(ttl, default) == ms


@pytest.mark.parametrize("bad", ["60", True, float("nan"), 1e13])
def test_bad_ttl(bad: object) -> None:
    with pytest.raises(ConfigError):
        core.entry_ms(bad, None)


def test_malformed_set_pairs() -> None:
    with pytest.raises(ConfigError, match="value, ttl"):
        core.plan_set(KEYS, {"k": "bare value"}, SERDE, None)


def test_clear_plans() -> None:
    everything = core.plan_clear(KEYS, None)
    assert everything is not None and everything.script is CACHE_CLEAR
    assert everything.keys == [KEYS.registry] and everything.args == ["all"]
    some = core.plan_clear(KEYS, [("a",), ("a",), ("a", "b")])
    assert some is not None
    assert some.keys == [KEYS.registry, KEYS.index(("a",)), KEYS.index(("a", "b"))]
    assert core.plan_clear(KEYS, []) is None
    with pytest.raises(ConfigError):
        core.plan_clear(KEYS, "a")


@given(
    st.one_of(
        st.none(),
        st.integers(-(2**63), 2**63 - 1),
        st.text(),
        st.binary(),
        st.lists(st.floats(allow_nan=False)),
    )
)
def test_values_round_trip(value: object) -> None:
    raw = core.encode_value(SERDE, value)
    assert core.decode_value(SERDE, raw, "k") == value


def test_foreign_or_corrupt_values_raise() -> None:
    with pytest.raises(CodecError, match="no type prefix"):
        core.decode_value(SERDE, b"plain", "k")
    with pytest.raises(CodecError, match="could not be decoded"):
        core.decode_value(SERDE, b"msgpack:\xc1", "k")
