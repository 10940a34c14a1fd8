"""The checkpoint views of one thread, materialised from its log.

Views point into the log for large values: a Valkey log entry keeps the event without
its values in field ``e`` and each channel or write value in its own field (``0``,
``1``, ...), so a view can name one value as ``<entry id>.<field>``. A value of at most
:data:`INLINE_MAX` stored bytes is kept in the view itself as ``=<length>|<value>``
(the log keeps its copy too): reading a checkpoint then follows a pointer only for the
large values, typically the message list in the checkpoint's own entry.

Keys (all under the thread session's hash tag; ``ns``, ``cid``, channel, version and task
ids escaped with :func:`~streamstate.eventlog.keys.escape`, so ``:`` separates):

* ``cps``    hash  ``ns:cid`` -> ``<id>.e|`` + msgpack ``[filter, blob fields, parent,
  run]`` (plain msgpack without binary, which server-side scripts can read).
* ``idx``    zset  ``ns:<raw cid>`` (score 0): lexicographic order is the raw ids' order,
  as LangGraph's in-memory saver sorts them; the escaped ``ns`` has no ``:``, so the
  first ``:`` splits a member.
* ``latest`` hash  ``ns`` -> greatest raw checkpoint id.
* ``blobs``  hash  ``ns:channel:version`` -> the value's reference (``""``: the channel
  has a version but no value), written once: an unchanged channel is never stored again.
* ``wz``     zset  ``ns:cid:task:idx`` and ``writes`` hash (same fields) -> the value's
  reference, then ``|`` + msgpack ``[task_path, channel, digest]`` (after the value, for
  an inline one); ordinary writes are inserted if absent, special channels (error,
  interrupt, resume, scheduled) overwrite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import msgspec

from streamstate.errors import CodecError
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import (
    CheckpointPut,
    Event,
    ItemDeleted,
    ItemPut,
    Typed,
    WritesPut,
)
from streamstate.eventlog.keys import SessionKeys, escape, unescape
from streamstate.eventlog.ops import Op, hmax, hset, hsetnx, zadd
from streamstate.eventlog.valkey.scripts import LuaScript

VIEWS = ("cps", "idx", "latest", "blobs", "wz", "writes")
INLINE_MAX = 1024
"""Stored values up to this many bytes are kept in the views, not only in the log."""
SPECIAL_CHANNELS = frozenset({"__error__", "__scheduled__", "__interrupt__", "__resume__"})

_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(tuple[dict[str, str], list[str], str, str])
_write_decoder = msgspec.msgpack.Decoder(tuple[str, str, str])


def _body(value: bytes) -> bytes:
    return value[value.index(b"|") + 1 :]


def _write_meta(value: bytes) -> bytes:
    """The msgpack part of a write record ``<reference>|<meta>``."""
    bar = value.index(b"|")
    if value[:1] == b"=":  # the reference is the value itself: "=<length>|<value>"
        return value[bar + 2 + int(value[1:bar]) :]
    return value[bar + 1 :]


def value_ref(at: str, k: int, stored: Sequence[bytes]) -> bytes:
    """How a view names value ``k`` of entry ``at``: inline if small, else a pointer."""
    if k < len(stored) and len(stored[k]) <= INLINE_MAX:
        return b"=%d|%s" % (len(stored[k]), stored[k])
    return f"{at}.{k}".encode()


def decode_record(rec: bytes) -> tuple[dict[str, str], list[str], str, str]:
    """A stored checkpoint record as ``(filter, blob fields, parent, run)``."""
    try:
        return _header_decoder.decode(_body(rec))
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"corrupt checkpoint record: {exc}", stage="msgpack") from exc


def decode_write(value: bytes) -> tuple[str, str]:
    """A stored write's ``(task_path, channel)``."""
    try:
        task_path, channel, _digest = _write_decoder.decode(_write_meta(value))
    except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"corrupt write record: {exc}", stage="msgpack") from exc
    return task_path, channel


def digest(value: Typed) -> str:
    """Tells two writes apart by content, so a retried identical write changes nothing."""
    h = hashlib.blake2b(value[0].encode(), digest_size=8)
    h.update(b"\0")
    h.update(value[1])
    return h.hexdigest()


def version_token(version: str | int | float) -> str:
    """A channel version as a field part; the type is kept so ``1`` and ``"1"`` differ."""
    if isinstance(version, bool):
        raise TypeError(f"channel versions cannot be bool: {version!r}")
    if isinstance(version, str):
        return "s" + escape(version)
    if isinstance(version, int):
        return f"i{version}"
    return "f" + escape(repr(float(version)))


def cp_field(ns: str, cid: str) -> str:
    return f"{escape(ns)}:{escape(cid)}"


def index_member(ns: str, cid: str) -> str:
    return f"{escape(ns)}:{cid}"


@lru_cache(maxsize=1 << 16, typed=True)
def blob_field(ns: str, channel: str, version: str | int | float) -> str:
    # A checkpoint lists every channel's field, and most are the same as its parent's:
    # with a wide state this formatting was most of a put's client time. ``typed``
    # keeps 1 and 1.0 (and True) apart, as version_token does.
    return f"{escape(ns)}:{escape(channel)}:{version_token(version)}"


@lru_cache(maxsize=1 << 16)
def blob_channel(field: str) -> str:
    """The channel a blob field names (the inverse of :func:`blob_field`'s middle part)."""
    return unescape(field.split(":")[1])


def write_field(ns: str, cid: str, task_id: str, idx: int) -> str:
    return f"{escape(ns)}:{escape(cid)}:{escape(task_id)}:{idx}"


class CheckpointView:
    """Projection of ``CheckpointPut`` and ``WritesPut`` events into the views above."""

    name = "checkpoints"

    def __init__(self, codec: Codec | None = None) -> None:
        # The codec that decodes the log's values for readers of this view.
        self.codec = codec or Codec()

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        return [keys.view(v) for v in VIEWS]

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[Op]:
        raise TypeError("CheckpointView points into the log: call apply_at with the entry id")

    def apply_at(
        self, keys: SessionKeys, event: Event, at: str, stored: Sequence[bytes] = ()
    ) -> Sequence[Op]:
        """The view's ops for ``event`` stored as log entry ``at`` (an id or placeholder)
        with its values ``stored`` as the log holds them (small ones are kept inline)."""
        match event:
            case CheckpointPut():
                return self._checkpoint(keys, event, at, stored)
            case WritesPut():
                return self._writes(keys, event, at, stored)
            case ItemPut() | ItemDeleted():
                return []

    def _checkpoint(
        self, keys: SessionKeys, event: CheckpointPut, at: str, stored: Sequence[bytes]
    ) -> list[Op]:
        ns = event.ns
        blob_fields = [blob_field(ns, ch, ver) for ch, ver in event.versions]
        # "empty" (a version without a value) is b"" so scripts can tell it from a value
        ops = [
            hsetnx(
                keys.view("blobs"),
                blob_field(ns, b.channel, b.version),
                "" if b.value[0] == "empty" else value_ref(at, k, stored),
            )
            for k, b in enumerate(event.blobs)
        ]
        header = _encoder.encode(
            [event.filter, blob_fields, event.parent_id or "", event.run_id or ""]
        )
        record = f"{at}.e|".encode() + header
        ops.append(hset(keys.view("cps"), cp_field(ns, event.checkpoint_id), record))
        ops.append(zadd(keys.view("idx"), 0, index_member(ns, event.checkpoint_id)))
        ops.append(hmax(keys.view("latest"), escape(ns), event.checkpoint_id))
        return ops

    def _writes(
        self, keys: SessionKeys, event: WritesPut, at: str, stored: Sequence[bytes]
    ) -> list[Op]:
        # all hash ops, then all index ops: the append script runs each run of
        # same-kind ops on one key as a single command
        ops: list[Op] = []
        index: list[Op] = []
        for k, w in enumerate(event.writes):
            field = write_field(event.ns, event.checkpoint_id, event.task_id, w.idx)
            meta = _encoder.encode([event.task_path, w.channel, digest(w.value)])
            put = hset if w.channel in SPECIAL_CHANNELS else hsetnx
            ops.append(put(keys.view("writes"), field, value_ref(at, k, stored) + b"|" + meta))
            index.append(zadd(keys.view("wz"), 0, field))
        return ops + index


# Shared Lua helpers. esc() escapes exactly as Python's quote(safe="-_.~"); hmget() reads
# in chunks (unpack() is limited by the Lua C stack); deref() returns an inline value
# ("=<length>|<value>...") or follows "<id>.<field>" into the log (KEYS[7]), reading each
# entry once per call.
_LUA_HELPERS = r"""
local function esc(s)
  return (string.gsub(s, "[^%w%-_%.~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, 5000 do
    local part = redis.call('HMGET', key, unpack(fields, i, math.min(i + 4999, #fields)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end
local entries = {}
local function entry(eid)
  local e = entries[eid]
  if e == nil then
    e = {}
    local r = redis.call('XRANGE', KEYS[7], eid, eid)
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
  return entry(string.sub(ref, 1, dot - 1))[string.sub(ref, dot + 1)] or false
end
local function header(rec)
  local p = string.find(rec, '|', 1, true)
  return cmsgpack.unpack(string.sub(rec, p + 1))
end
local function writes_of(f)
  local wf = redis.call('ZRANGEBYLEX', KEYS[5], '[' .. f .. ':', '(' .. f .. ';')
  if #wf == 0 then return {}, {}, {} end
  local wv = hmget(KEYS[6], wf)
  local wp = {}
  for i = 1, #wv do wp[i] = deref(wv[i]) end
  return wf, wv, wp
end
local function tuple_of(f, rec)
  local r = header(rec)
  local blobs = {}
  if #r[2] > 0 then
    local refs = hmget(KEYS[4], r[2])
    for i = 1, #refs do blobs[i] = deref(refs[i]) end
  end
  local wf, wv, wp = writes_of(f)
  return {f, rec, deref(rec), blobs, wf, wv, wp}
end
"""

# KEYS: cps idx latest blobs wz writes log. ARGV: [1] escaped ns, [2] raw checkpoint id or ''.
# Reply: nil, or {field, record, event head, blob values, write fields, write records,
# write values}.
GET_TUPLE = LuaScript(
    "get_tuple",
    _LUA_HELPERS
    + r"""
local ens, cid = ARGV[1], ARGV[2]
if cid == '' then
  cid = redis.call('HGET', KEYS[3], ens)
  if not cid then return nil end
end
local f = ens .. ':' .. esc(cid)
local rec = redis.call('HGET', KEYS[1], f)
if not rec then return nil end
return tuple_of(f, rec)
""",
)

# KEYS: as GET_TUPLE. ARGV: [1] escaped ns or '' for every namespace, [2] '1' if [1] is
# given, [3] raw "before" checkpoint id or '', [4] raw exact checkpoint id or '',
# [5] page size, [6] scan budget, [7] resume-after member or '', then filter pairs
# (key, canonical value). Walks ``idx`` newest first and returns matching tuples.
# Reply: {next cursor member or '', {tuple...}}.
LIST_PAGE = LuaScript(
    "list_page",
    _LUA_HELPERS
    + r"""
local ens, one_ns = ARGV[1], ARGV[2] == '1'
local before, exact = ARGV[3], ARGV[4]
local want, budget, cursor = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local filters = {}
for i = 8, #ARGV, 2 do filters[#filters + 1] = {ARGV[i], ARGV[i + 1]} end

local hi, lo = '+', '-'
if one_ns then hi, lo = '(' .. ens .. ';', '[' .. ens .. ':' end
if exact ~= '' then
  if not one_ns then return redis.error_reply('ERR exact checkpoint needs a namespace') end
  hi, lo = '[' .. ens .. ':' .. exact, '[' .. ens .. ':' .. exact
elseif one_ns and before ~= '' then
  hi = '(' .. ens .. ':' .. before
end
if cursor ~= '' then hi = '(' .. cursor end

local found, scanned, last = {}, 0, ''
while #found < want and scanned < budget do
  local chunk = math.min(200, budget - scanned)
  local members = redis.call('ZREVRANGEBYLEX', KEYS[2], hi, lo, 'LIMIT', 0, chunk)
  if #members == 0 then return {'', found} end
  for _, m in ipairs(members) do
    scanned = scanned + 1
    last = m
    local sep = string.find(m, ':', 1, true)
    local raw = m:sub(sep + 1)
    local f = m:sub(1, sep) .. esc(raw)
    local ok = true
    if (not one_ns) and before ~= '' then ok = raw < before end
    local rec = nil
    if ok then
      rec = redis.call('HGET', KEYS[1], f)
      ok = rec ~= nil and rec ~= false
    end
    if ok and #filters > 0 then
      local meta = header(rec)[1]
      for _, fv in ipairs(filters) do
        local v = meta[fv[1]]
        if fv[2] == 'null' then
          if v ~= nil and v ~= 'null' then ok = false break end
        elseif v ~= fv[2] then ok = false break end
      end
    end
    if ok then
      found[#found + 1] = tuple_of(f, rec)
      if #found >= want then return {m, found} end
    end
  end
  hi = '(' .. last
  if #members < chunk then return {'', found} end
end
return {last, found}
""",
)

# KEYS: as GET_TUPLE. ARGV: [1] escaped ns, [2] raw checkpoint id, [3] max ancestors,
# then escaped channel names. Walks the parent chain of the target (exclusive),
# collecting each ancestor's writes, until every channel has a seed (a stored blob).
# Reply: {found target (0/1), {{cid, write fields, write records, write values}...},
#         {channel, blob, step number (1-based)}...}.
DELTA_HISTORY = LuaScript(
    "delta_history",
    _LUA_HELPERS
    + r"""
local ens, cid, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local remaining, left = {}, 0
for i = 4, #ARGV do remaining[ARGV[i]] = true; left = left + 1 end
local rec = redis.call('HGET', KEYS[1], ens .. ':' .. esc(cid))
if not rec then return {0, {}, {}} end
local parent = header(rec)[3]
local steps, seeds = {}, {}
local n = 0
while parent ~= '' and left > 0 and n < limit do
  n = n + 1
  local f = ens .. ':' .. esc(parent)
  rec = redis.call('HGET', KEYS[1], f)
  if not rec then break end
  local r = header(rec)
  local wf, wv, wp = writes_of(f)
  steps[#steps + 1] = {parent, wf, wv, wp}
  for _, bf in ipairs(r[2]) do
    local p1 = string.find(bf, ':', 1, true)
    local p2 = string.find(bf, ':', p1 + 1, true)
    local ch = bf:sub(p1 + 1, p2 - 1)
    if remaining[ch] then
      local blob = redis.call('HGET', KEYS[4], bf)
      if blob and blob ~= '' then
        seeds[#seeds + 1] = ch
        seeds[#seeds + 1] = deref(blob)
        seeds[#seeds + 1] = #steps
        remaining[ch] = nil
        left = left - 1
      end
    end
  end
  parent = r[3]
end
return {1, steps, seeds}
""",
)
