"""The append script's op interpreter against a model that applies one op at a time.

The script runs a run of same-kind ops on one key as one command (HSETNX as HMGET then
HSET of the absent fields); whatever the sequence, the views must end up exactly as if
each op had run alone, in order.
"""

from __future__ import annotations

import uuid
from typing import Any

import valkey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamstate.eventlog import ops
from streamstate.eventlog.keys import Keyspace
from streamstate.eventlog.valkey import _core

KINDS = {"h": "hash", "z": "zset", "s": "set"}
FIELDS = st.sampled_from(["a", "b", "c"])
VALUES = st.sampled_from(["1", "2", "x", ""])
MAKERS = {
    "hash": [
        lambda k: st.builds(ops.hset, st.just(k), FIELDS, VALUES),
        lambda k: st.builds(ops.hsetnx, st.just(k), FIELDS, VALUES),
        lambda k: st.builds(ops.hmax, st.just(k), FIELDS, VALUES),
        lambda k: st.builds(ops.hdel, st.just(k), FIELDS),
    ],
    "zset": [
        lambda k: st.builds(ops.zadd, st.just(k), st.integers(0, 3), FIELDS),
        lambda k: st.builds(ops.zrem, st.just(k), FIELDS),
    ],
    "set": [
        lambda k: st.builds(ops.sadd, st.just(k), FIELDS),
        lambda k: st.builds(ops.srem, st.just(k), FIELDS),
    ],
}


def _run(key: str, kind: str) -> st.SearchStrategy[list[ops.Op]]:
    """Several ops of one code on one key: what the script batches."""
    return st.sampled_from(MAKERS[kind]).flatmap(
        lambda make: st.lists(make(key), min_size=1, max_size=6)
    )


def _model(sequence: list[ops.Op]) -> dict[str, Any]:
    views: dict[str, Any] = {}
    for code, key, args in sequence:
        if code in ("HSET", "HSETNX", "HMAX", "HDEL"):
            h = views.setdefault(key, {})
            field, current = args[0], h.get(args[0])
            if code == "HDEL":
                h.pop(field, None)
            elif code == "HSET" or current is None or (code == "HMAX" and current < args[1]):
                h[field] = args[1]
        elif code in ("ZADD", "ZREM"):
            z = views.setdefault(key, {})
            if code == "ZADD":
                z[args[1]] = float(args[0])
            else:
                z.pop(args[0], None)
        else:
            s = views.setdefault(key, set())
            (s.add if code == "SADD" else s.discard)(args[0])
    return {k: v for k, v in views.items() if v}


def _read(client: valkey.Valkey, key: str, kind: str) -> Any:
    if kind == "hash":
        return {f.decode(): v.decode() for f, v in client.hgetall(key).items()}
    if kind == "zset":
        return {m.decode(): s for m, s in client.zrange(key, 0, -1, withscores=True)}
    return {m.decode() for m in client.smembers(key)}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_batched_runs_apply_like_one_op_at_a_time(
    client: valkey.Valkey, data: st.DataObject
) -> None:
    keyspace = Keyspace(f"ops{uuid.uuid4().hex[:8]}")
    session = ("t", "model")
    sk = keyspace.session(session)
    keys = {sk.view(f"{name}{i}"): kind for name, kind in KINDS.items() for i in range(2)}
    runs = data.draw(
        st.lists(st.sampled_from(sorted(keys)).flatmap(lambda k: _run(k, keys[k])), max_size=8)
    )
    sequence = [op for run in runs for op in run]
    client.execute_command(*_call_args(_core.plan_apply_ops(keyspace, session, sequence)))
    got = {k: _read(client, k, kind) for k, kind in keys.items()}
    assert {k: v for k, v in got.items() if v} == _model(sequence)


def _call_args(call: _core.ScriptCall) -> list[Any]:
    return ["EVAL", call.script.source, len(call.keys), *call.keys, *call.args]


ONE_OP = {
    "HSET": lambda k: ops.hset(k, "f", "v"),
    "HSETNX": lambda k: ops.hsetnx(k, "f", "v"),
    "HMAX": lambda k: ops.hmax(k, "f", "v"),
    "HDEL": lambda k: ops.hdel(k, "f"),
    "ZADD": lambda k: ops.zadd(k, 1, "m"),
    "ZREM": lambda k: ops.zrem(k, "m"),
    "SADD": lambda k: ops.sadd(k, "m"),
    "SREM": lambda k: ops.srem(k, "m"),
    "SET": lambda k: ops.set_(k, "v"),
    "DEL": lambda k: ops.delete(k),
    "PEXPIRE": lambda k: ops.pexpire(k, 60_000),
}


def test_every_op_code_is_known_to_the_server_with_its_key_type(client: valkey.Valkey) -> None:
    # OP_SPECS is the one definition of the op codes; the script's tables are rendered
    # from it. Each code runs, and a code bound to a key type refuses a key of another
    # type before anything is written.
    assert set(ONE_OP) == set(ops.OP_SPECS)
    keyspace = Keyspace(f"ops{uuid.uuid4().hex[:8]}")
    session = ("t", "codes")
    for code, spec in ops.OP_SPECS.items():
        key = keyspace.session(session).view(code.lower())
        op = ONE_OP[code](key)
        assert len(op.args) == spec.arity
        client.execute_command(*_call_args(_core.plan_apply_ops(keyspace, session, [op])))
        if spec.key_type is None:
            continue
        client.delete(key)
        if spec.key_type == "string":
            client.sadd(key, "other")
        else:
            client.set(key, "other")
        before = client.dump(key)
        try:
            client.execute_command(*_call_args(_core.plan_apply_ops(keyspace, session, [op])))
        except valkey.ResponseError as exc:
            assert "WRONGTYPE" in str(exc) and f"expected a {spec.key_type}" in str(exc), exc
        else:
            raise AssertionError(f"{code} on a key of another type was not refused")
        assert client.dump(key) == before
