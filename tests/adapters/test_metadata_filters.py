"""``list(filter=...)`` agrees with LangGraph's InMemorySaver for metadata of any type.

InMemorySaver keeps a checkpoint when ``query_value == metadata.get(key)`` for every
filter pair, ``metadata`` being what its serializer reads back. So ``1 == True ==
1.0`` (nested too), ``b"x" != "x"``, a datetime is not its ISO string, a NaN equals
nothing, a tuple is not the list msgpack turns it into, and ``None`` matches a missing
key. Our savers compare strings instead (``canonical`` against the stored forms of a
checkpoint event's ``filter``); these tests hold the two to the same answers:

* ``canonical`` and ``stored_form`` against Python's ``==`` directly (no server);
* ValkeySaver, AgentCoreValkeySaver, AgentCoreMemorySaver and BedrockSessionSaver
  (the last two on the AWS emulator) against InMemorySaver, checkpoint for checkpoint;
* the stored forms of values an earlier release could already store: unchanged for
  strings, ints, ``None``, top-level floats and lists and string-keyed dicts of these.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import msgspec
import pytest
import valkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from streamstate import (
    AgentCoreMemorySaver,
    AgentCoreValkeySaver,
    BedrockSessionSaver,
    ValkeySaver,
)
from streamstate.adapters._checkpoints import NO_MATCH, canonical, stored_form
from streamstate.testing.aws_emulator import AwsEmulator
from tests.aws.test_agentcore_helpers import in_process

SERDE = JsonPlusSerializer()
UTC = timezone.utc
ZONES = [None, UTC, timezone(timedelta(hours=1)), timezone(-timedelta(hours=5, minutes=30))]
KEYS = ["a", "b", "c"]
ABSENT = "zz"  # a key no checkpoint has


def read_back(value: Any) -> Any:
    """The value as InMemorySaver compares it: serialized, then read back (a new object
    each time, as InMemorySaver reads its metadata anew on each ``list``)."""
    return SERDE.loads_typed(SERDE.dumps_typed(value))


def storable(value: Any) -> bool:
    try:
        read_back(value)
    except (TypeError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------- values
HASHABLE_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 2**53, 2**53 + 1, 2**63 - 1]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0.0, -0.0, 1.0, 0.5, 2.0, 2.0**53, math.nan, math.inf, -math.inf]),
    st.floats(),
    st.sampled_from(["", "1", "1.0", "true", "null", "x", "eA==", "2020-01-01T00:00:00"]),
    st.text(alphabet='ab1"\\\x00é😀', max_size=4),
    st.sampled_from([b"", b"x", b"1", b"eA=="]),
    st.binary(max_size=3),
    st.datetimes(timezones=st.sampled_from(ZONES)),
    st.sampled_from([datetime(2020, 1, 1), datetime(2020, 1, 1, tzinfo=UTC)]),
    st.dates(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from([Decimal("1"), Decimal("1.0"), Decimal("0.5"), Decimal("0.1")]),
)
HASHABLE = st.recursive(
    HASHABLE_LEAVES, lambda kids: st.lists(kids, max_size=3).map(tuple), max_leaves=4
)
LEAVES = st.one_of(HASHABLE_LEAVES, st.binary(max_size=3).map(bytearray))


def containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text(alphabet="ab1", max_size=2), kids, max_size=3),
        st.dictionaries(HASHABLE, kids, max_size=2),
        st.frozensets(HASHABLE, max_size=3),
        st.sets(HASHABLE, max_size=3),
    )


VALUES = st.recursive(LEAVES, containers, max_leaves=6)
STORABLE = st.one_of(LEAVES, VALUES).filter(storable)
#: query values may also be what no saver can store
QUERY_ONLY = st.one_of(
    st.integers(min_value=2**64),
    st.fractions(max_denominator=8),
    st.complex_numbers(max_magnitude=4),
    st.sampled_from([Fraction(1, 2), complex(1, 0), complex(0.5, 0), object()]),
)


@st.composite
def twin(draw: st.DrawFn, value: Any) -> Any:
    """A value equal to ``value`` or nearly (another type, another spelling)."""
    if isinstance(value, bool):
        return draw(st.sampled_from([value, int(value), float(value), Decimal(int(value))]))
    if isinstance(value, int):
        options: list[Any] = [value, float(value), Decimal(value), Fraction(value), str(value)]
        if value in (0, 1):
            options.append(bool(value))
        return draw(st.sampled_from(options))
    if isinstance(value, float):
        options = [value, str(value), complex(value, 0)]
        if math.isfinite(value):
            options += [Decimal(value), Fraction(value), Decimal(repr(value))]
            if value.is_integer():
                options += [int(value), value == 1]
        return draw(st.sampled_from(options))
    if isinstance(value, (bytes, bytearray)):
        return draw(
            st.sampled_from(
                [
                    bytes(value),
                    bytearray(value),
                    memoryview(bytes(value)),
                    value.decode("latin-1"),
                    base64.b64encode(value).decode(),
                ]
            )
        )
    if isinstance(value, str):
        return draw(st.sampled_from([value, value.encode(), value + "\x00"]))
    if isinstance(value, datetime):
        options = [value, value.isoformat(), value.replace(tzinfo=None)]
        if value.tzinfo is not None:
            options += [value.astimezone(z) for z in ZONES[1:] if _shiftable(value, z)]
        else:
            options += [value.replace(tzinfo=UTC), value.date()]
        return draw(st.sampled_from(options))
    if isinstance(value, (date, uuid.UUID, timedelta, Decimal)):
        return draw(st.sampled_from([value, str(value)]))
    if isinstance(value, list):
        items = [draw(twin(v)) for v in value]
        return draw(st.sampled_from([items, tuple(items), value]))
    if isinstance(value, tuple):
        items = [draw(twin(v)) for v in value]
        return draw(st.sampled_from([tuple(items), items]))
    if isinstance(value, dict):
        twinned = {k: draw(twin(v)) for k, v in value.items()}
        return draw(st.sampled_from([twinned, value, dict(list(value.items())[1:])]))
    if isinstance(value, (set, frozenset)):
        return draw(st.sampled_from([set(value), frozenset(value), list(value)]))
    return value


def _shiftable(value: datetime, zone: timezone) -> bool:
    try:
        value.astimezone(zone)
    except OverflowError:
        return False
    return True


@st.composite
def queries(draw: st.DrawFn, stored: Any) -> Any:
    return draw(
        st.one_of(twin(stored), st.just(None), VALUES, QUERY_ONLY)
        if draw(st.booleans())
        else twin(stored)
    )


# --------------------------------------------------------------------------- forms
def in_memory_match(query: Any, stored: Any) -> bool:
    return bool(query == read_back(stored))


def form_match(query: Any, stored: Any) -> bool:
    return canonical(query, SERDE) == stored_form(read_back(stored), SERDE)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stored=STORABLE)
def test_forms_are_equal_exactly_when_values_are(data: st.DataObject, stored: Any) -> None:
    query = data.draw(queries(stored), label="query")
    assert form_match(query, stored) == in_memory_match(query, stored)


CROSS_TYPE = [
    # (stored, query, equal?)
    (1, True, True),
    (True, 1.0, True),
    (0, False, True),
    (1.0, 1, True),
    (-0.0, 0, True),
    ([1, {"x": 2}], [True, {"x": 2.0}], True),
    ({"x": [1.0]}, {"x": (1,)}, False),
    ({1: "a"}, {True: "a"}, True),
    ({1: "a"}, {"1": "a"}, False),
    ({1, 2}, frozenset({1.0, 2}), True),
    ({1, 2}, [1, 2], False),
    ((1, 2), [1, 2], True),  # msgpack reads a tuple back as a list
    ((1, 2), (1, 2), False),
    (0.5, Decimal("0.5"), True),
    (0.1, Decimal("0.1"), False),
    (Decimal("0.1"), Fraction(1, 10), True),
    (2, complex(2, 0), True),
    (2**53 + 1, float(2**53), False),
    (b"x", "x", False),
    (b"x", bytearray(b"x"), True),
    (b"x", "eA==", False),
    (datetime(2020, 1, 1), "2020-01-01T00:00:00", False),
    (datetime(2020, 1, 1), date(2020, 1, 1), False),
    (datetime(2020, 1, 1), datetime(2020, 1, 1, tzinfo=UTC), False),
    (
        datetime(2020, 1, 1, tzinfo=UTC),
        datetime(2020, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        True,
    ),
    (uuid.UUID(int=1), str(uuid.UUID(int=1)), False),
    (timedelta(days=1), timedelta(hours=24), True),
    (math.nan, math.nan, False),
    ([math.nan], [math.nan], False),
    (math.inf, math.inf, True),
    (math.inf, None, False),
    (None, None, True),
    ("a", "a\x00", False),
]


@pytest.mark.parametrize(("stored", "query", "equal"), CROSS_TYPE)
def test_cross_type_cases(stored: Any, query: Any, equal: bool) -> None:
    assert in_memory_match(query, stored) == equal  # the reference, as documented above
    assert form_match(query, stored) == equal


def test_a_nan_query_matches_nothing_not_even_a_missing_key() -> None:
    for query in (math.nan, [1, math.nan], {"x": {math.nan}}, Decimal("NaN"), object()):
        assert canonical(query, SERDE) == NO_MATCH
    assert stored_form(math.nan, SERDE) != NO_MATCH


_previous = msgspec.json.Encoder(order="deterministic")


def previous_canonical(value: Any) -> str:
    """The stored form before this release (for the values it encoded as JSON)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _previous.encode(value).decode()


JSON_LEAVES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
)
UNCHANGED = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # top-level: integral ones too
    st.recursive(
        JSON_LEAVES,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3),
        max_leaves=8,
    ),
)


@settings(max_examples=1000, deadline=None)
@given(value=UNCHANGED)
def test_stored_forms_of_common_values_are_unchanged(value: Any) -> None:
    assert stored_form(read_back(value), SERDE) == previous_canonical(value)
    assert canonical(value, SERDE) == previous_canonical(value)


# --------------------------------------------------------------------------- savers
@pytest.fixture(scope="module")
def emulator() -> Iterator[AwsEmulator]:
    with AwsEmulator() as emu:
        yield emu
        assert emu.internal_errors == []


@pytest.fixture(scope="module")
def savers(valkey_url: str, emulator: AwsEmulator) -> Iterator[dict[str, BaseCheckpointSaver]]:
    client = valkey.Valkey.from_url(valkey_url)
    memory_id = emulator.create_memory("filters")
    yield {
        "valkey": ValkeySaver(client),
        "agentcore-valkey": AgentCoreValkeySaver(client),
        "agentcore": AgentCoreMemorySaver(
            memory_id, client=in_process(emulator, emulator.agentcore_client())
        ),
        "bedrock": BedrockSessionSaver(
            client=in_process(emulator, emulator.agent_runtime_client())
        ),
    }
    client.close()


def _config(thread: str, actors: bool) -> dict[str, Any]:
    configurable = {"thread_id": thread, "checkpoint_ns": ""}
    if actors:
        configurable["actor_id"] = "filter-actor"
    return {"configurable": configurable}


def _put_all(
    saver: BaseCheckpointSaver, config: dict[str, Any], ids: list[str], metas: list[dict]
) -> None:
    for cid, meta in zip(ids, metas):
        config = saver.put(config, {**empty_checkpoint(), "id": cid}, meta, {})


METAS = st.lists(
    st.dictionaries(st.sampled_from(KEYS), STORABLE, max_size=len(KEYS)), min_size=1, max_size=4
)


@st.composite
def filters(draw: st.DrawFn, metas: list[dict[str, Any]]) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from([*KEYS, ABSENT]), min_size=1, max_size=2, unique=True))
    out = {}
    for key in keys:
        present = [m[key] for m in metas if key in m]
        if present and draw(st.integers(0, 3)):
            out[key] = draw(queries(draw(st.sampled_from(present))))
        else:
            out[key] = draw(st.one_of(st.none(), VALUES))
    return out


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data(), metas=METAS)
def test_list_filters_agree_with_in_memory_saver(
    savers: dict[str, BaseCheckpointSaver], data: st.DataObject, metas: list[dict[str, Any]]
) -> None:
    thread = uuid.uuid4().hex
    reference = InMemorySaver()
    ref_config = _config(thread, actors=False)
    ids = [str(uuid6(clock_seq=i)) for i in range(len(metas))]
    _put_all(reference, ref_config, ids, metas)
    configs = {}
    for name, saver in savers.items():
        configs[name] = _config(thread, actors=name.startswith("agentcore"))
        _put_all(saver, configs[name], ids, metas)

    flts = data.draw(st.lists(filters(metas), min_size=1, max_size=4), label="filters")
    for flt in [*flts, {ABSENT: None}]:
        want = [
            t.config["configurable"]["checkpoint_id"]
            for t in reference.list(ref_config, filter=flt)
        ]
        for name, saver in savers.items():
            got = [
                t.config["configurable"]["checkpoint_id"]
                for t in saver.list(configs[name], filter=flt)
            ]
            assert got == want, (name, flt)
