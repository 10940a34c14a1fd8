"""The checkpoint views of one thread, materialised from its log.

Keys (all under the thread session's hash tag; ``ns``, ``cid``, channel, version and
task ids escaped with :func:`~streamstate.eventlog.keys.escape`, so ``:`` separates):

* ``cps``    hash  ``ns:cid`` -> record: a 4-byte big-endian length, a plain msgpack header
  ``[filter, blob fields, parent, run]`` that server-side scripts read (their msgpack
  has no binary type), then the codec-encoded body ``(checkpoint, metadata)``.
* ``idx``    zset  ``ns:<raw cid>`` (score 0): lexicographic order is the raw ids' order,
  as LangGraph's in-memory saver sorts them; the escaped ``ns`` has no ``:``, so the
  first ``:`` splits a member.
* ``latest`` hash  ``ns`` -> greatest raw checkpoint id.
* ``blobs``  hash  ``ns:channel:version`` -> codec-encoded ``(type, bytes)``, written once:
  an unchanged channel is never stored again.
* ``wz``     zset  ``ns:cid:task:idx`` and ``writes`` hash (same fields) ->
  codec-encoded ``(task_path, channel, type, bytes)``; ordinary writes are inserted if
  absent, special channels (error, interrupt, resume, scheduled) overwrite.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from streamstate.errors import CodecError
from streamstate.eventlog.codec import Codec
from streamstate.eventlog.events import CheckpointPut, Event, ItemDeleted, ItemPut, WritesPut
from streamstate.eventlog.keys import SessionKeys, escape
from streamstate.eventlog.ops import Op, hmax, hset, hsetnx, zadd
from streamstate.eventlog.valkey.scripts import LuaScript

VIEWS = ("cps", "idx", "latest", "blobs", "wz", "writes")
SPECIAL_CHANNELS = frozenset({"__error__", "__scheduled__", "__interrupt__", "__resume__"})

_record_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(tuple[dict[str, str], list[str], str, str])


def decode_record(rec: bytes) -> tuple[dict[str, str], list[str], str, str, bytes]:
    """Split a stored record into ``(filter, blob fields, parent, run, body)``."""
    n = int.from_bytes(rec[:4], "big")
    try:
        filter_, blobs, parent, run = _header_decoder.decode(rec[4 : 4 + n])
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CodecError(f"corrupt checkpoint record: {exc}", stage="msgpack") from exc
    return filter_, blobs, parent, run, rec[4 + n :]


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


def blob_field(ns: str, channel: str, version: str | int | float) -> str:
    return f"{escape(ns)}:{escape(channel)}:{version_token(version)}"


def write_field(ns: str, cid: str, task_id: str, idx: int) -> str:
    return f"{escape(ns)}:{escape(cid)}:{escape(task_id)}:{idx}"


class CheckpointView:
    """Projection of ``CheckpointPut`` and ``WritesPut`` events into the views above."""

    name = "checkpoints"

    def __init__(self, codec: Codec | None = None) -> None:
        # Views are encoded with the same codec as the log (compression, cipher).
        self.codec = codec or Codec()

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        return [keys.view(v) for v in VIEWS]

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[Op]:
        match event:
            case CheckpointPut():
                return self._checkpoint(keys, event)
            case WritesPut():
                return self._writes(keys, event)
            case ItemPut() | ItemDeleted():
                return []

    def encode_blob(self, value: tuple[str, bytes]) -> bytes:
        # "empty" (a channel with a version but no value) is stored as b"" so that
        # server-side scripts can tell a missing value from a stored one.
        return b"" if value[0] == "empty" else self.codec.encode(value)

    def record(self, event: CheckpointPut, blob_fields: Sequence[str]) -> bytes:
        header = _record_encoder.encode(
            [event.filter, list(blob_fields), event.parent_id or "", event.run_id or ""]
        )
        body = self.codec.encode((event.checkpoint, event.metadata))
        return len(header).to_bytes(4, "big") + header + body

    def _checkpoint(self, keys: SessionKeys, event: CheckpointPut) -> list[Op]:
        ns = event.ns
        field = cp_field(ns, event.checkpoint_id)
        blob_fields = [blob_field(ns, ch, ver) for ch, ver in event.versions]
        ops = [
            hsetnx(
                keys.view("blobs"), blob_field(ns, b.channel, b.version), self.encode_blob(b.value)
            )
            for b in event.blobs
        ]
        ops.append(hset(keys.view("cps"), field, self.record(event, blob_fields)))
        ops.append(zadd(keys.view("idx"), 0, index_member(ns, event.checkpoint_id)))
        ops.append(hmax(keys.view("latest"), escape(ns), event.checkpoint_id))
        return ops

    def _writes(self, keys: SessionKeys, event: WritesPut) -> list[Op]:
        ops: list[Op] = []
        for w in event.writes:
            field = write_field(event.ns, event.checkpoint_id, event.task_id, w.idx)
            value = self.codec.encode((event.task_path, w.channel, w.value[0], w.value[1]))
            put = hset if w.channel in SPECIAL_CHANNELS else hsetnx
            ops.append(put(keys.view("writes"), field, value))
            ops.append(zadd(keys.view("wz"), 0, field))
        return ops


# Shared Lua helpers: escape exactly as Python's quote(safe="-_.~"), and HMGET in chunks
# (unpack() is limited by the Lua C stack).
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
local function writes_of(f)
  local wf = redis.call('ZRANGEBYLEX', KEYS[5], '[' .. f .. ':', '(' .. f .. ';')
  if #wf == 0 then return {}, {} end
  return wf, hmget(KEYS[6], wf)
end
local function header(rec)
  local n = struct.unpack('>I4', rec)
  return cmsgpack.unpack(string.sub(rec, 5, 4 + n))
end
local function tuple_of(f, rec)
  local r = header(rec)
  local blobs = {}
  if #r[2] > 0 then blobs = hmget(KEYS[4], r[2]) end
  local wf, wv = writes_of(f)
  return {f, rec, blobs, wf, wv}
end
"""

# KEYS: cps idx latest blobs wz writes. ARGV: [1] escaped ns, [2] raw checkpoint id or ''.
# Reply: nil, or {field, record, blob values, write fields, write values}.
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
# Reply: {found target (0/1), {{cid, write fields, write values}...},
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
  local wf, wv = writes_of(f)
  steps[#steps + 1] = {parent, wf, wv}
  for _, bf in ipairs(r[2]) do
    local p1 = string.find(bf, ':', 1, true)
    local p2 = string.find(bf, ':', p1 + 1, true)
    local ch = bf:sub(p1 + 1, p2 - 1)
    if remaining[ch] then
      local blob = redis.call('HGET', KEYS[4], bf)
      if blob and blob ~= '' then
        seeds[#seeds + 1] = ch
        seeds[#seeds + 1] = blob
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
