"""The checkpoint views of one thread (layout 2), materialised from its log.

A thread is three keys under its hash tag: the log (``log``, a stream), the views hash
``v`` and the index ``z``. How an event changes the views is defined once, in the Lua of
:data:`THREAD_WRITE`; put, put_writes, copy, compaction and rebuild all run it, so a
rebuilt view is the live view by construction.

``v`` (hash; ``ens``, ``ecid``, ``ech``, ``etask`` are ids escaped with
:func:`~streamstate.eventlog.keys.escape`, so ``:`` separates):

* ``c:<ens>:<ecid>`` -> ``<entry id>|`` + msgpack ``[filter, [<ech>:<version>...],
  parent, run, writes prefix]``: a checkpoint. Its head (the checkpoint and metadata)
  is field ``e`` of its own log entry; every channel it has is listed by version.
* ``b:<ens>:<ech>:<version>`` -> the value's reference, written once per version (an
  unchanged channel is never stored again); ``""`` for a version without a value.
* ``w:<ens>:<cid>:<task>:<idx>`` (ids in :func:`compact_id` form, so the field stays
  under the 64 bytes up to which Valkey keeps a small hash or zset compact) -> the
  value's reference, ``|``, msgpack
  ``[task_path, channel, digest]``. Ordinary writes are inserted if absent; special
  channels (error, interrupt, resume, scheduled) overwrite.

A reference is ``<entry id>.<field>`` (the value stays in the log only) or, for a stored
value of at most :data:`INLINE_MAX` bytes, ``=<length>|<value>``: small values are read
without following a pointer.

``z`` (zset, score 0, ordered by member): ``c:<ens>:<raw cid>`` for every checkpoint
(lexicographic order of the raw ids is LangGraph's order; the newest of a namespace is
the last of its range) and every write's field, so a checkpoint's writes are one range
of ``z``.

The registries live outside the thread, in sorted sets scored by the time (ms) their
member's thread expires (``inf`` without a TTL); each key expires with its last member.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import msgspec

from streamstate.errors import CodecError
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import (
    BlobsPut,
    CheckpointPut,
    Event,
    WritesPut,
)
from streamstate.eventlog.keys import Keyspace, SessionKeys, escape, unescape
from streamstate.eventlog.valkey._core import ScriptCall, encode_entry, ttl_ms
from streamstate.eventlog.valkey.scripts import LuaScript

LAYOUT = 2
"""The version of this key layout (layout 1 kept six view keys per thread)."""

VIEWS = ("v", "z")
LEGACY_VIEWS = ("cps", "idx", "latest", "blobs", "wz", "writes", "idem")
"""Layout 1's keys of a thread: migrated on first touch, deleted by a rebuild."""

INLINE_MAX = 64
"""Stored values up to this many bytes are kept in the views, not only in the log."""
MAX_VALUES_PER_ENTRY = 2000
"""A server-side script passes at most ~8,000 values to one command (its C stack), so
an event with more values is split into entries of at most this many."""
_FIELD_NAMES = [str(k) for k in range(MAX_VALUES_PER_ENTRY)]
"""Stream field names of an entry's values (``0``, ``1``, ...), made once."""
SPECIAL_CHANNELS = frozenset({"__error__", "__scheduled__", "__interrupt__", "__resume__"})

_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(tuple[dict[str, str], list[str], str, str, str])
_write_decoder = msgspec.msgpack.Decoder(tuple[str, str, str])


def thread_keys(keys: SessionKeys) -> list[str]:
    """A thread's keys in the order every script takes them: log, views, index."""
    return [keys.log, keys.view("v"), keys.view("z")]


def legacy_keys(keys: SessionKeys) -> list[str]:
    return [keys.view(v) if v != "idem" else keys.idem for v in LEGACY_VIEWS]


# -- registries ---------------------------------------------------------------------------


def threads_registry(keyspace: Keyspace) -> str:
    """Every thread with a log: a zset of session tags scored by expiry (ms)."""
    return f"{keyspace.prefix}:threads"


def run_registry(keyspace: Keyspace, run_id: str) -> str:
    """The threads a run wrote checkpoints to (for ``delete_for_runs``)."""
    return keyspace.global_key("runs", run_id)


def actor_registry(keyspace: Keyspace, thread_id: str) -> str:
    """The actors that have a session named ``thread_id`` (AgentCore threads)."""
    return keyspace.global_key("actors-of", thread_id)


# -- field names --------------------------------------------------------------------------


_PADDED = re.compile(r"0*([1-9][0-9]*)(\.[0-9]+(?:\.[0-9]+)?)").fullmatch


def version_token(version: str | int | float) -> str:
    """A channel version as a field part; the type is kept so ``1`` and ``"1"`` differ.

    LangGraph's string versions are a 32-digit zero-padded counter and a random
    fraction; their token drops the padding (``p1.0.42...``), so a field stays under
    the 64 bytes up to which Valkey keeps a small hash compact.
    """
    if isinstance(version, bool):
        raise TypeError(f"channel versions cannot be bool: {version!r}")
    if isinstance(version, str):
        padded = _PADDED(version) if len(version) > 32 and version[32] == "." else None
        if padded is not None:
            return "p" + padded.group(1) + padded.group(2)
        return "s" + escape(version)
    if isinstance(version, int):
        return f"i{version}"
    return "f" + escape(repr(float(version)))


def parse_version_token(token: str) -> str | int | float:
    kind, rest = token[0], token[1:]
    if kind == "p":
        counter, dot, fraction = rest.partition(".")
        return counter.zfill(32) + dot + fraction
    if kind == "s":
        return unescape(rest)
    if kind == "i":
        return int(rest)
    return float(unescape(rest))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


@lru_cache(maxsize=1 << 14, typed=True)
def compact_id(value: str) -> str:
    """An id as a field part: a canonical UUID (LangGraph's checkpoint and task ids) as
    ``!`` + 22 base64url characters, anything else escaped. ``!`` never survives
    escaping, so the two forms cannot meet; a write's field then stays under 64 bytes."""
    if isinstance(value, str) and _UUID(value) is not None:
        return "!" + base64.urlsafe_b64encode(uuid.UUID(value).bytes).decode()[:22]
    return escape(value)  # refuses what is not a string


@lru_cache(maxsize=1 << 14)
def expand_id(part: str) -> str:
    """Invert :func:`compact_id` (cached: reads meet the same task ids again and again)."""
    if part.startswith("!"):
        return str(uuid.UUID(bytes=base64.urlsafe_b64decode(part[1:] + "==")))
    return unescape(part)


@lru_cache(maxsize=1 << 16, typed=True)
def channel_spec(channel: str, version: str | int | float) -> str:
    # A checkpoint lists every channel, and most are the same as its parent's: with a
    # wide state this formatting was most of a put's client time. ``typed`` keeps 1 and
    # 1.0 (and True) apart, as version_token does.
    return f"{escape(channel)}:{version_token(version)}"


@lru_cache(maxsize=1 << 16)
def spec_channel(spec: str) -> str:
    """The channel a channel spec names."""
    return unescape(spec.split(":", 1)[0])


def parse_spec(spec: str) -> tuple[str, str | int | float]:
    ech, token = spec.split(":", 1)
    return unescape(ech), parse_version_token(token)


def cp_field(ns: str, cid: str) -> str:
    return f"c:{escape(ns)}:{escape(cid)}"


def writes_prefix(ns: str, cid: str) -> str:
    """What every write field of a checkpoint starts with (before ``:<task>:<call>``)."""
    return f"w:{escape(ns)}:{compact_id(cid)}"


def parse_write_field(field: str) -> str:
    """The task id a write record's field names."""
    return expand_id(field.split(":")[3])


# -- stored records -----------------------------------------------------------------------


def split_record(rec: bytes) -> tuple[str, bytes]:
    """A checkpoint record as ``(entry id, header bytes)``."""
    bar = rec.index(b"|")
    return rec[:bar].decode(), rec[bar + 1 :]


def decode_record(rec: bytes) -> tuple[dict[str, str], list[str], str, str]:
    """A stored checkpoint record as ``(filter, channel specs, parent, run)``."""
    try:
        return _header_decoder.decode(split_record(rec)[1])[:4]
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"corrupt checkpoint record: {exc}", stage="msgpack") from exc


_record_decoder = msgspec.msgpack.Decoder(tuple[str, list[tuple[int, str, int | bytes]]])


def decode_writes_record(rec: bytes) -> tuple[str, str, list[tuple[int, str, int | bytes]]]:
    """A stored write record as ``(entry id, task_path, [(idx, channel, value)...])``; a
    value is the stored bytes, or the number of the entry's field that holds them."""
    entry_id, body = split_record(rec)
    try:
        task_path, items = _record_decoder.decode(body[1:])
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"corrupt write record: {exc}", stage="msgpack") from exc
    return entry_id, task_path, items


def content_digest(fields: Sequence[bytes]) -> str:
    """An entry's content digest (field ``d``): BLAKE2b-128 over its encoded event and
    values, each length-prefixed so no two different entries share one."""
    h = hashlib.blake2b(digest_size=16)
    for f in fields:
        h.update(len(f).to_bytes(8, "big"))
        h.update(f)
    return h.hexdigest()


def chain_hash(previous: str, digest: str) -> str:
    """An entry's chain hash (field ``h``): SHA-1 of the previous entry's ``h`` (empty
    for the first chained entry) and its own ``d``; the write script computes it."""
    return hashlib.sha1((previous + digest).encode()).hexdigest()


def call_digest(event: WritesPut) -> str:
    """Names a put_writes call by its content (12 base64url characters), so a retried
    call finds its own record; a write field then stays under 64 bytes. Taken over the
    serializer's values, not the stored ones (a cipher makes those differ per call)."""
    parts = [event.task_path.encode()]
    for w in event.writes:
        kind, data = w.value
        parts.append(b"\0%d\0%s\0%s\0%d\0" % (w.idx, w.channel.encode(), kind.encode(),
                                                 len(data)))  # fmt: skip
        parts.append(data)
    digest = hashlib.blake2b(b"".join(parts), digest_size=9).digest()
    return base64.urlsafe_b64encode(digest).decode()


# -- events as script arguments -------------------------------------------------------------


def split_event(event: Event) -> list[Event]:
    """The event as log entries of at most :data:`MAX_VALUES_PER_ENTRY` values each: a
    large checkpoint's extra values go first as ``BlobsPut`` entries, a large task's
    writes as several ``WritesPut`` entries of the same task."""
    n = MAX_VALUES_PER_ENTRY
    match event:
        case CheckpointPut(blobs=blobs) if len(blobs) > n:
            extra = [BlobsPut(event.ns, event.checkpoint_id, blobs[i : i + n]) for i in
                     range(n, len(blobs), n)]  # fmt: skip
            return [*extra, msgspec.structs.replace(event, blobs=blobs[:n])]
        case WritesPut(writes=writes) if len(writes) > n:
            return [msgspec.structs.replace(event, writes=writes[i : i + n])
                    for i in range(0, len(writes), n)]  # fmt: skip
    return [event]


def value_ref(k: int, stored: Sequence[bytes], empty: bool) -> bytes | str:
    """How the views name value ``k`` of an event whose stored values are ``stored``:
    ``""`` for a version without a value, the value itself if small, else ``@k`` (the
    script makes that ``<entry id>.k`` once the entry has its id)."""
    if empty:
        return ""
    if len(stored[k]) <= INLINE_MAX:
        return b"=%d|%s" % (len(stored[k]), stored[k])
    return f"@{k}"


def _blob_args(ens: str, blobs: Sequence[Any], stored: Sequence[bytes]) -> list[Any]:
    args: list[Any] = [len(blobs)]
    for k, b in enumerate(blobs):
        args += [f"b:{ens}:{channel_spec(b.channel, b.version)}",
                 value_ref(k, stored, b.value[0] == "empty")]  # fmt: skip
    return args


def view_args(event: Event, stored: Sequence[bytes]) -> tuple[str, list[Any]]:
    """The event's kind for the write script and the view fields it sets: names,
    references (``stored``: the event's values as the log keeps them), records."""
    match event:
        case CheckpointPut():
            ens = escape(event.ns)
            header = _encoder.encode(
                [
                    event.filter,
                    [channel_spec(ch, ver) for ch, ver in event.versions],
                    event.parent_id or "",
                    event.run_id or "",
                    writes_prefix(event.ns, event.checkpoint_id),
                ]
            )
            record = f"c:{ens}:{escape(event.checkpoint_id)}"
            member = f"c:{ens}:{event.checkpoint_id}"
            return "c", [record, header, member, *_blob_args(ens, event.blobs, stored)]
        case BlobsPut():
            return "b", _blob_args(escape(event.ns), event.blobs, stored)
        case WritesPut():
            # One record per put_writes call, named by its content: a retried call finds
            # its record and writes nothing; readers fold a task's records in log order.
            write_field = f"{writes_prefix(event.ns, event.checkpoint_id)}:" + (
                f"{compact_id(event.task_id)}:{call_digest(event)}"
            )
            # each value inline if small (value_ref's rule), else its field number k
            items = [
                (w.idx, w.channel, value if len(value) <= INLINE_MAX else k)
                for k, (w, value) in enumerate(zip(event.writes, stored))
            ]
            pointers = any(type(item[2]) is int for item in items)
            body = (b"p" if pointers else b"-") + _encoder.encode([event.task_path, items])
            return "w", [write_field, body]
    raise TypeError(f"{type(event).__name__} is not a checkpoint event")


def has_views(event: Event) -> bool:
    return isinstance(event, (CheckpointPut, BlobsPut, WritesPut))


# -- the write script ---------------------------------------------------------------------

_REGISTER_LUA = r"""
-- Registers member in the zset key until expiry ms ('inf': forever), refreshing an
-- expiry that ends before ``want``; the key itself expires with its last member, and
-- members that expired are dropped whenever the key is written.
local function register(key, member, now, want, expiry)
  local s = redis.call('ZSCORE', key, member)
  if s then
    if s == 'inf' or (expiry ~= 'inf' and tonumber(s) >= want) then return end
  end
  redis.call('ZADD', key, expiry, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] == nil then return end
  if top[2] == 'inf' then redis.call('PERSIST', key)
  else redis.call('PEXPIREAT', key, top[2]) end
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: [1] log, [2] v, [3] z, then nreg registries, then doomed keys (deleted first).
# ARGV: [1] mode, [2] guard field or '', [3] expected last log id or '', [4] ttl ms or '',
#       [5] nreg, [6] ndoomed, [7] the run registries' key prefix, [8] the chain head
#       (rebuild: the newest entry's 'h'), then per registry its
#       member and its marker field in v ('' for the thread's own registries,
#       'r:<escaped run id>' for a run's), then per event: kind ('c', 'b', 'w'), entry id
#       ('' to append it), its content digest, n, then n XADD arguments (field, value...;
#       none when the entry is already in the log), then what ``view_args`` gives:
#         c: record field, header, index member, nb, nb x (blob field, reference)
#         b: nb, nb x (blob field, reference)
#         w: record field, record body (stored as '<entry id>|' .. body)
#       A reference '@k' stands for '<entry id>.k'; others are stored as they are.
# Modes: 'put' (a duplicate if the guard field exists), 'writes' (a duplicate if no
# write would change a view), 'append' (copy), 'replace' (delete the thread, then
# append: compaction), 'rebuild' (apply entries already in the log to v and z).
# The view rules: checkpoint records and blobs are set; a write record (one per
# put_writes call, named by its content) is added once; every checkpoint and write
# record is a member of z. Which write of a task wins is decided when reading.
# Registries are written when the thread (or a run of it) first appears, and with a TTL
# whenever the thread registry's expiry would end before the thread's; a steady put
# without TTL reads or writes no registry.
# Reply: {1, id...}; {0} a duplicate; {-1, last id} the log moved on ([3]);
# {-2, n} the thread's keys are incomplete (n of 3 exist): repair, then retry.
THREAD_WRITE = LuaScript(
    "thread_write",
    _REGISTER_LUA
    + r"""
local LOG, V, Z = KEYS[1], KEYS[2], KEYS[3]
local mode, guard, expected, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nreg, ndoomed, runs_prefix = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local head = ARGV[8]
local fresh = mode == 'replace' or mode == 'rebuild'
local regs, markers = {}, {}
for r = 1, nreg do regs[r], markers[r] = ARGV[7 + 2 * r], ARGV[8 + 2 * r] end
-- events as positions in ARGV: nothing is copied
local evs = {}
local i = 9 + 2 * nreg
while i <= #ARGV do
  local kind = ARGV[i]
  local ev = {kind = kind, id = ARGV[i + 1], digest = ARGV[i + 2], x0 = i + 4,
              nx = tonumber(ARGV[i + 3])}
  i = i + 4 + ev.nx
  if kind == 'c' then
    ev.rec, ev.hdr, ev.member = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    ev.n, ev.at, ev.step = tonumber(ARGV[i + 3]), i + 4, 2
  elseif kind == 'b' then
    ev.n, ev.at, ev.step = tonumber(ARGV[i]), i + 1, 2
  elseif kind == 'w' then
    ev.rec, ev.body, ev.n, ev.at, ev.step = ARGV[i], ARGV[i + 1], 0, i + 2, 0
  else
    return redis.error_reply('ERR streamstate: unknown event kind ' .. tostring(kind))
  end
  i = ev.at + ev.n * ev.step
  evs[#evs + 1] = ev
end

local function hmget(key, fields)
  local out = {}
  for s = 1, #fields, 3000 do
    local part = redis.call('HMGET', key, unpack(fields, s, math.min(s + 2999, #fields)))
    for y = 1, #part do out[s + y - 1] = part[y] end
  end
  return out
end
local function call_chunked(cmd, key, args)
  for s = 1, #args, 6000 do
    redis.call(cmd, key, unpack(args, s, math.min(s + 5999, #args)))
  end
end
local function fail_type(key, t, kind)
  return redis.error_reply('WRONGTYPE streamstate: ' .. key .. ' holds a ' .. t ..
    ', expected a ' .. kind)
end

-- Reads, all before the first write. They prove the key types: the log's by XADD (the
-- first write), v's by the HMGET (or a TYPE when there is nothing to read), z's by TYPE.
local present = 0
if fresh then
  if expected ~= '' then
    local last = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
    local actual = (last[1] and last[1][1]) or ''
    if actual ~= expected then return {-1, actual} end
  end
else
  present = redis.call('EXISTS', LOG, V, Z)
  if present ~= 0 and present ~= 3 then return {-2, present} end
  if present == 3 then
    local t = redis.call('TYPE', Z)['ok']
    if t ~= 'zset' then return fail_type(Z, t, 'zset') end
  end
end
local wanted = {'h'}
if guard ~= '' then wanted[2] = guard end
for r = 1, nreg do
  if markers[r] ~= '' then wanted[#wanted + 1] = markers[r] end
end
for _, ev in ipairs(evs) do
  if ev.kind == 'w' then wanted[#wanted + 1] = ev.rec end
end
local cur = {}
if not fresh and #wanted > 0 then
  local got = hmget(V, wanted)
  for k = 1, #wanted do cur[wanted[k]] = got[k] end
elseif present == 3 then
  local t = redis.call('TYPE', V)['ok']
  if t ~= 'hash' then return fail_type(V, t, 'hash') end
end
if guard ~= '' and cur[guard] then return {0} end

if mode == 'writes' then  -- a retried call finds every record it would write
  local effective = false
  for _, ev in ipairs(evs) do
    if not cur[ev.rec] then effective = true end
  end
  if not effective then return {0} end
end

-- writes
if fresh then
  if mode == 'replace' then redis.call('DEL', LOG, V, Z) else redis.call('DEL', V, Z) end
  for d = 1, ndoomed do redis.call('DEL', KEYS[3 + nreg + d]) end
end
local reply = {1}
local hset, zadd, written = {}, {}, {}
-- the chain: each appended entry carries its content digest 'd' and 'h', the SHA-1 of
-- the previous entry's 'h' and its own 'd'; v's field 'h' is the newest 'h'
local chained = false
if not fresh then head = cur['h'] or '' end
for _, ev in ipairs(evs) do
  local id = ev.id
  if id == '' then
    if ev.digest == '' then  -- unchained (a diagnostic: what the chain costs)
      id = redis.call('XADD', LOG, '*', unpack(ARGV, ev.x0, ev.x0 + ev.nx - 1))
    else
      head = redis.sha1hex(head .. ev.digest)
      chained = true
      id = redis.call('XADD', LOG, '*', 'h', head, 'd', ev.digest,
        unpack(ARGV, ev.x0, ev.x0 + ev.nx - 1))
    end
    reply[#reply + 1] = id
  end
  local function resolve(ref)
    if string.byte(ref, 1) == 64 then return id .. '.' .. string.sub(ref, 2) end
    return ref
  end
  if ev.kind == 'w' then
    if not cur[ev.rec] and not written[ev.rec] then
      written[ev.rec] = true
      hset[#hset + 1] = ev.rec
      hset[#hset + 1] = id .. '|' .. ev.body
      zadd[#zadd + 1] = 0
      zadd[#zadd + 1] = ev.rec
    end
  else
    for k = 0, ev.n - 1 do
      local at = ev.at + 2 * k
      hset[#hset + 1] = ARGV[at]
      hset[#hset + 1] = resolve(ARGV[at + 1])
    end
    if ev.kind == 'c' then
      hset[#hset + 1] = ev.rec
      hset[#hset + 1] = id .. '|' .. ev.hdr
      zadd[#zadd + 1] = 0
      zadd[#zadd + 1] = ev.member
    end
  end
end
if chained or (mode == 'rebuild' and head ~= '') then
  hset[#hset + 1] = 'h'
  hset[#hset + 1] = head
end
if #hset > 0 then call_chunked('HSET', V, hset) end
if #zadd > 0 then call_chunked('ZADD', Z, zadd) end

if mode == 'rebuild' then
  local pttl = redis.call('PTTL', LOG)
  if pttl > 0 then
    redis.call('PEXPIRE', V, pttl)
    redis.call('PEXPIRE', Z, pttl)
  end
elseif ttl ~= '' then
  redis.call('PEXPIRE', LOG, ttl)
  redis.call('PEXPIRE', V, ttl)
  redis.call('PEXPIRE', Z, ttl)
end
if nreg > 0 then
  -- the registry expiry: with a TTL, 1.5 TTL from now, refreshed once less than one TTL
  -- is left, so a registry never drops a live thread
  local ms = nil
  if ttl ~= '' then ms = tonumber(ttl)
  elseif mode == 'rebuild' then
    local pttl = redis.call('PTTL', LOG)
    if pttl > 0 then ms = pttl end
  end
  local now, want, expiry, renew = 0, 0, 'inf', false
  if ms then
    now = clock()
    want, expiry = now + ms, now + math.floor(ms * 3 / 2)
    local s = redis.call('ZSCORE', KEYS[4], regs[1])
    renew = (not s) or (s ~= 'inf' and tonumber(s) < want)
  end
  local marked = {}
  for r = 1, nreg do
    local m = markers[r]
    local new = (m == '' and (present == 0 or fresh)) or (m ~= '' and not cur[m])
    if renew or new then
      if now == 0 then now = clock(); want = now end
      register(KEYS[3 + r], regs[r], now, want, expiry)
    end
    if m ~= '' then
      marked[m] = true
      if not cur[m] then redis.call('HSET', V, m, '') end
    end
  end
  if renew then  -- the thread's other runs must outlive it too
    local cursor = '0'
    repeat
      local page = redis.call('HSCAN', V, cursor, 'MATCH', 'r:*', 'COUNT', 1000)
      cursor = page[1]
      for y = 1, #page[2], 2 do
        local m = page[2][y]
        if not marked[m] then
          register(runs_prefix .. string.sub(m, 3), regs[1], now, want, expiry)
        end
      end
    until cursor == '0'
  end
end
return reply
""",
)

# KEYS: one registry. ARGV: [1] member, [2] ttl ms or ''. On a cluster a registry lives
# on another slot than the thread, so it is written by this script of its own.
REGISTER = LuaScript(
    "register",
    _REGISTER_LUA
    + r"""
local now = clock()
if ARGV[2] == '' then register(KEYS[1], ARGV[1], now, now, 'inf')
else
  local ttl = tonumber(ARGV[2])
  register(KEYS[1], ARGV[1], now, now + ttl, now + math.floor(ttl * 3 / 2))
end
return 1
""",
)

# KEYS: one registry. Drops members whose thread expired; replies with the rest's count.
PRUNE_REGISTRY = LuaScript(
    "prune_registry",
    _REGISTER_LUA
    + r"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. clock())
return redis.call('ZCARD', KEYS[1])
""",
)

# KEYS: log, v, z, then layout 1's keys, then registries. ARGV: [1] nlegacy, then the
# member of each registry. Deletes the thread and unregisters it; replies how many of
# its keys existed.
THREAD_DELETE = LuaScript(
    "thread_delete",
    _REGISTER_LUA
    + r"""
local nlegacy = tonumber(ARGV[1])
local removed = 0
for k = 1, 3 + nlegacy do removed = removed + redis.call('DEL', KEYS[k]) end
for r = 4 + nlegacy, #KEYS do
  local key = KEYS[r]
  redis.call('ZREM', key, ARGV[r - 2 - nlegacy])
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if top[2] ~= nil and top[2] ~= 'inf' then redis.call('PEXPIREAT', key, top[2]) end
end
return removed
""",
)


# -- the read scripts ---------------------------------------------------------------------

# Shared Lua of the reads. esc() escapes exactly as Python's quote(safe="-_.~");
# deref() returns an inline value ("=<length>|<value>...") or follows "<id>.<field>"
# into the log, reading each entry once per call; -1 when that entry is gone.
_READ_LUA = (
    _REGISTER_LUA
    + r"""
local LOG, V, Z = KEYS[1], KEYS[2], KEYS[3]
-- refresh_on_read: ARGV[at] is the TTL in ms ('' none); the thread's registries are
-- KEYS[4..] with their members in ARGV[at + 1..]. Only a thread that exists is touched.
local function refresh(at)
  local ttl = ARGV[at]
  if ttl == '' or redis.call('EXISTS', LOG) == 0 then return end
  for _, k in ipairs({LOG, V, Z}) do redis.call('PEXPIRE', k, ttl) end
  local now = clock()
  local t = tonumber(ttl)
  for r = 4, #KEYS do
    register(KEYS[r], ARGV[at + r - 3], now, now + t, now + math.floor(t * 3 / 2))
  end
end
local function esc(s)
  -- ids are mostly UUIDs, which need no escaping: skip gsub's per-call closure
  if not string.find(s, "[^%w%-_%.~]") then return s end
  return (string.gsub(s, "[^%w%-_%.~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end
local function hmget(fields)
  local out = {}
  for i = 1, #fields, 3000 do
    local part = redis.call('HMGET', V, unpack(fields, i, math.min(i + 2999, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end
-- a reply saying the thread's keys are incomplete (evicted or deleted apart, or still in
-- layout 1), or nil; every read checks first, so no read returns a partial answer
local function damaged()
  local present = redis.call('EXISTS', LOG, V, Z)
  if present ~= 0 and present ~= 3 then return {-2, present} end
  return nil
end
local entries = {}
local function entry(eid)
  local e = entries[eid]
  if e == nil then
    e = {}
    local r = redis.call('XRANGE', LOG, eid, eid)
    if r[1] then
      local f = r[1][2]
      for i = 1, #f, 2 do e[f[i]] = f[i + 1] end
    end
    entries[eid] = e
  end
  return e
end
local function deref(v)
  if not v or v == '' then return v end
  if string.byte(v, 1) == 61 then
    local bar = string.find(v, '|', 1, true)
    return string.sub(v, bar + 1, bar + tonumber(string.sub(v, 2, bar - 1)))
  end
  local p = string.find(v, '|', 1, true)
  local ref = p and string.sub(v, 1, p - 1) or v
  local dot = string.find(ref, '.', 1, true)
  return entry(string.sub(ref, 1, dot - 1))[string.sub(ref, dot + 1)] or -1
end
local function header(rec)
  local p = string.find(rec, '|', 1, true)
  return cmsgpack.unpack(string.sub(rec, p + 1)), string.sub(rec, 1, p - 1)
end
-- The value fields of a writes entry as a flat list (-1 when the entry is gone): its
-- event head, digest and chain hash stay in the log, readers need only the values.
local function values_of(id)
  local r = redis.call('XRANGE', LOG, id, id)
  if not r[1] then return -1 end
  local f, out = r[1][2], {}
  for j = 1, #f, 2 do
    local b = string.byte(f[j])
    if b >= 48 and b <= 57 then
      out[#out + 1] = f[j]
      out[#out + 1] = f[j + 1]
    end
  end
  return out
end
-- For write records ``wv``: the values of each that points into its entry ('p' after
-- the entry id), false for one whose values are all inline.
local function pointed(wv)
  local wp = {}
  for i = 1, #wv do
    local rec = wv[i]
    wp[i] = false
    if rec then
      local bar = string.find(rec, '|', 1, true)
      if string.byte(rec, bar + 1) == 112 then wp[i] = values_of(string.sub(rec, 1, bar - 1)) end
    end
  end
  return wp
end
-- A checkpoint's write fields, records and pointed-to values (see ``pointed``).
local function writes_of(p)
  local wf = redis.call('ZRANGEBYLEX', Z, '[' .. p .. ':', '(' .. p .. ';')
  if #wf == 0 then return {}, {}, {} end
  local wv = hmget(wf)
  return wf, wv, pointed(wv)
end
local function tuple_of(ens, ecid, rec)
  local h, id = header(rec)
  local blobs = {}
  if #h[2] > 0 then
    local fields = {}
    for i, spec in ipairs(h[2]) do fields[i] = 'b:' .. ens .. ':' .. spec end
    local refs = hmget(fields)
    for i = 1, #fields do blobs[i] = deref(refs[i]) end
  end
  local wf, wv, wp = writes_of(h[5])
  return {ens .. ':' .. ecid, rec, entry(id)['e'] or false, blobs, wf, wv, wp}
end
"""
)

# KEYS: log v z, then registries. ARGV: [1] escaped ns, [2] raw checkpoint id or '',
# [3] refresh-on-read TTL in ms or '', then a member per registry.
# Reply: nil; {-2, n} (incomplete thread); or {field, record, event head, blob values,
# write fields, write records, write values}.
GET_TUPLE = LuaScript(
    "get_tuple",
    _READ_LUA
    + r"""
local ens, cid = ARGV[1], ARGV[2]
local d = damaged()
if d then return d end
refresh(3)
if cid == '' then
  local m = redis.call('ZREVRANGEBYLEX', Z, '(c:' .. ens .. ';', '[c:' .. ens .. ':',
    'LIMIT', 0, 1)
  if not m[1] then return nil end
  cid = string.sub(m[1], #ens + 4)
end
local ecid = esc(cid)
local rec = redis.call('HGET', V, 'c:' .. ens .. ':' .. ecid)
if not rec then return nil end
return tuple_of(ens, ecid, rec)
""",
)

# KEYS: log v z, then registries. ARGV: [1] escaped ns or '' for every namespace, [2] '1'
# if [1] is given, [3] raw "before" checkpoint id or '', [4] raw exact checkpoint id or
# '', [5] page size, [6] scan budget, [7] resume-after member or '', [8] filter pair
# count, then filter pairs (key, canonical value), then the refresh-on-read TTL in ms or
# '' and a member per registry. Walks ``z`` newest first and returns matching tuples.
# Reply: {next cursor member or '', {tuple...}}, or {-2, n} (incomplete thread).
LIST_PAGE = LuaScript(
    "list_page",
    _READ_LUA
    + r"""
local ens, one_ns = ARGV[1], ARGV[2] == '1'
local before, exact = ARGV[3], ARGV[4]
local want, budget, cursor = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local filters = {}
local nf = tonumber(ARGV[8])
for i = 9, 8 + 2 * nf, 2 do
  -- a query value may list alternatives (forms older releases stored), NUL-separated
  local alts, first = {}, nil
  for form in string.gmatch(ARGV[i + 1], '[^%z]+') do
    first = first or form
    alts[form] = true
  end
  filters[#filters + 1] = {ARGV[i], first or ARGV[i + 1], alts}
end
if cursor == '' then
  local d = damaged()
  if d then return d end
  refresh(9 + 2 * nf)
end
local hi, lo = '(c;', '[c:'
if one_ns then hi, lo = '(c:' .. ens .. ';', '[c:' .. ens .. ':' end
if exact ~= '' then
  if not one_ns then return redis.error_reply('ERR exact checkpoint needs a namespace') end
  hi, lo = '[c:' .. ens .. ':' .. exact, '[c:' .. ens .. ':' .. exact
elseif one_ns and before ~= '' then
  hi = '(c:' .. ens .. ':' .. before
end
if cursor ~= '' then hi = '(' .. cursor end

local found, scanned, last = {}, 0, ''
while #found < want and scanned < budget do
  local chunk = math.min(200, budget - scanned)
  local members = redis.call('ZREVRANGEBYLEX', Z, hi, lo, 'LIMIT', 0, chunk)
  if #members == 0 then return {'', found} end
  for _, m in ipairs(members) do
    scanned = scanned + 1
    last = m
    local sep = string.find(m, ':', 3, true)
    local mens, raw = string.sub(m, 3, sep - 1), string.sub(m, sep + 1)
    local ecid = esc(raw)
    local ok = true
    if (not one_ns) and before ~= '' then ok = raw < before end
    local rec = nil
    if ok then
      rec = redis.call('HGET', V, 'c:' .. mens .. ':' .. ecid)
      ok = rec ~= nil and rec ~= false
    end
    if ok and #filters > 0 then
      local meta = header(rec)[1]
      for _, fv in ipairs(filters) do
        local v = meta[fv[1]]
        if fv[2] == 'null' then
          if v ~= nil and v ~= 'null' then ok = false break end
        elseif v ~= fv[2] and not (v and fv[3][v]) then ok = false break end
      end
    end
    if ok then
      found[#found + 1] = tuple_of(mens, ecid, rec)
      if #found >= want then return {m, found} end
    end
  end
  hi = '(' .. last
  if #members < chunk then return {'', found} end
end
return {last, found}
""",
)

# KEYS: log v z. ARGV: [1] escaped ns, [2] raw checkpoint id, [3] max ancestors, then
# escaped channel names. Walks the parent chain of the target (exclusive) until every
# channel has a seed (a stored value), then reads the chain's writes in bulk.
# Reply: {found target (0/1), {{cid, write fields, write records, write values}...},
#         {channel, blob, step number (1-based)}...}, or {-2, n} (incomplete thread).
DELTA_HISTORY = LuaScript(
    "delta_history",
    _READ_LUA
    + r"""
local ens, cid, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local remaining, left = {}, 0
for i = 4, #ARGV do remaining[ARGV[i]] = true; left = left + 1 end
local d = damaged()
if d then return d end
local rec = redis.call('HGET', V, 'c:' .. ens .. ':' .. esc(cid))
if not rec then return {0, {}, {}} end
local parent = header(rec)[3]
local chain, prefixes, seeds = {}, {}, {}
local n = 0
while parent ~= '' and left > 0 and n < limit do
  rec = redis.call('HGET', V, 'c:' .. ens .. ':' .. esc(parent))
  if not rec then break end
  n = n + 1
  local h = header(rec)
  chain[n], prefixes[n] = parent, h[5]
  for _, spec in ipairs(h[2]) do
    local ch = string.sub(spec, 1, string.find(spec, ':', 1, true) - 1)
    if remaining[ch] then
      local blob = redis.call('HGET', V, 'b:' .. ens .. ':' .. spec)
      if blob and blob ~= '' then
        seeds[#seeds + 1] = ch
        seeds[#seeds + 1] = deref(blob)
        seeds[#seeds + 1] = n
        remaining[ch] = nil
        left = left - 1
      end
    end
  end
  parent = h[3]
end
-- The chain's write fields: one range of z per checkpoint, or one range over all the
-- namespace's writes when z is at most a few times longer than the chain (a range costs
-- several members' worth); both list a checkpoint's fields in z's order.
local wfs = {}
for k = 1, n do wfs[prefixes[k]] = {} end
local lo, hi = '[w:' .. ens .. ':', '(w:' .. ens .. ';'
if n > 0 and redis.call('ZCARD', Z) <= 6 * n then
  local offset = 0
  repeat
    local page = redis.call('ZRANGEBYLEX', Z, lo, hi, 'LIMIT', offset, 5000)
    for _, m in ipairs(page) do
      local colon = string.find(m, ':', #lo + 1, true)  -- the one after the checkpoint id
      local list = colon and wfs[string.sub(m, 1, colon - 1)]
      if list then list[#list + 1] = m end
    end
    offset = offset + #page
  until #page < 5000
else
  for k = 1, n do
    local p = prefixes[k]
    wfs[p] = redis.call('ZRANGEBYLEX', Z, '[' .. p .. ':', '(' .. p .. ';')
  end
end
-- every record in one read (chunked), then the values they point at
local all = {}
for k = 1, n do
  for _, f in ipairs(wfs[prefixes[k]]) do all[#all + 1] = f end
end
local recs = #all > 0 and hmget(all) or {}
local steps, at = {}, 0
for k = 1, n do
  local wf = wfs[prefixes[k]]
  local wv = {}
  for i = 1, #wf do wv[i] = recs[at + i] end
  at = at + #wf
  steps[k] = {chain[k], wf, wv, pointed(wv)}
end
return {1, steps, seeds}
""",
)


# -- planning the write script ------------------------------------------------------------

Registry = tuple[str, str]
"""A registry key and the member this thread has in it."""


def plan_write(
    codec: Codec,
    keys: SessionKeys,
    mode: str,
    events: Sequence[Event],
    *,
    ids: Sequence[str] | None = None,
    stored: Sequence[Sequence[bytes]] | None = None,
    chain_head: str = "",
    chain: bool = True,
    guard: str = "",
    expected: str = "",
    ttl: float | None = None,
    registries: Sequence[Registry] = (),
    doomed: Sequence[str] = (),
    cluster: bool = False,
) -> ScriptCall:
    """A call of :data:`THREAD_WRITE` (see its comment for the modes).

    ``ids`` are the events' entry ids when they are in the log already (``rebuild``),
    with ``stored``, their values as the log keeps them; otherwise each event is sent
    with its stored fields. On a cluster the
    registries live on other slots: they become :data:`REGISTER` calls run before the
    script (and skipped while a previous run still holds).
    """
    regs = [] if cluster else list(registries)
    ttl_arg = "" if ttl is None else ttl_ms(ttl)
    runs_prefix = f"{keys.prefix}:runs:"  # run_registry's keys
    args: list[Any] = [mode, guard, expected, ttl_arg, len(regs), len(doomed), runs_prefix,
                       chain_head]  # fmt: skip
    for key, member in regs:
        run = key[len(runs_prefix) :] if key.startswith(runs_prefix) else None
        args += [member, "" if run is None else f"r:{run}"]
    for n, event in enumerate(events):
        if ids is not None:  # already in the log, with these stored values
            kind, rest = view_args(event, stored[n] if stored is not None else ())
            args += [kind, ids[n], "", 0]
        else:
            fields = encode_entry(codec, event)
            kind, rest = view_args(event, fields[1:])
            digest = content_digest(fields) if chain else ""
            args += [kind, "", digest, 2 * len(fields), "e", fields[0]]
            for k, value in enumerate(fields[1:]):
                args += [_FIELD_NAMES[k], value]
        args += rest
    call_keys = [*thread_keys(keys), *(key for key, _m in regs), *doomed]
    before: tuple[ScriptCall, ...] = ()
    if cluster and registries:
        # valid for half the TTL: the script refreshes an expiry ending within the TTL
        valid = None if ttl is None else ttl / 2
        before = tuple(
            ScriptCall(REGISTER, [key], [member, ttl_arg], valid_for=valid)
            for key, member in registries
        )
    idempotent = mode in ("put", "writes", "rebuild") or bool(expected)
    return ScriptCall(THREAD_WRITE, call_keys, args, idempotent=idempotent, before=before)


def plan_delete(
    keys: SessionKeys, registries: Sequence[Registry], *, cluster: bool = False
) -> ScriptCall:
    """Delete the thread (both layouts' keys) and take it out of its registries."""
    regs = [] if cluster else list(registries)
    call_keys = [*thread_keys(keys), *legacy_keys(keys), *(key for key, _m in regs)]
    return ScriptCall(
        THREAD_DELETE, call_keys, [len(LEGACY_VIEWS), *(member for _key, member in regs)]
    )
