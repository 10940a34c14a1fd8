"""The store's item views: items by namespace and key, creation times and expiries.

Every view key lives under the store session's hash tag; namespaces and keys never
appear in key names. An item is named inside the views by its *member*::

    label_1 \\0 label_2 \\0 ... label_n \\0\\0 key        (UTF-8)

LangGraph refuses empty labels and labels containing NUL, so the first ``\\0\\0`` always
ends the namespace and the encoding is injective: a namespace holding ``/``, ``:``,
``*`` or braces can neither collide with nor reach another one. Byte order of members
is LangGraph's order of ``(namespace, key)`` (UTF-8 preserves code point order and
``\\0`` sorts first), so one lexicographic sorted set answers point reads, prefix
scans and namespace listings.

Views (all updated by :meth:`ItemsProjection.apply`, atomically with the append):

``items``
    Sorted set of members, all with score 0 (ordered lexicographically).
``data``
    Hash member -> record: a 21-byte header (version, ``updated_at``, TTL minutes or
    -1, number of vectors) followed by the value's msgpack bytes, as in the event.
``created``
    Hash member -> ``created_at`` (seconds); written insert-if-absent, so an update
    keeps the creation time.
``exp``
    Sorted set member -> expiry (Unix ms) for items written with a TTL. Reads compare
    it with the server clock; a read with refresh moves it forward.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from streamstate.eventlog import ops
from streamstate.eventlog.events import Event, ItemDeleted, ItemPut
from streamstate.eventlog.keys import SessionKeys
from streamstate.eventlog.valkey.scripts import LuaScript

RECORD = struct.Struct(">Bddi")
"""Record header: format version, updated_at (s), TTL minutes (-1: none), vector count."""
RECORD_V1 = 1
NO_TTL = -1.0
VIEW_NAMES = ("items", "data", "created", "exp")


def member(namespace: Sequence[str], key: str) -> bytes:
    """The view name of one item (see the module docstring)."""
    return namespace_bytes(namespace) + b"\x00\x00" + key.encode()


def namespace_bytes(namespace: Sequence[str]) -> bytes:
    """A namespace as the leading part of its members' names."""
    return b"\x00".join(label.encode() for label in namespace)


def split_member(m: bytes) -> tuple[tuple[str, ...], str]:
    """Invert :func:`member`."""
    ns, _, key = m.partition(b"\x00\x00")
    return parse_namespace(ns), key.decode()


def parse_namespace(ns: bytes) -> tuple[str, ...]:
    """Invert :func:`namespace_bytes`."""
    return tuple(part.decode() for part in ns.split(b"\x00")) if ns else ()


def expiry_ms(updated_at: float, ttl_minutes: float) -> int:
    """When an item written at ``updated_at`` with this TTL expires (Unix ms)."""
    return round((updated_at + ttl_minutes * 60.0) * 1000.0)


def record(event: ItemPut) -> bytes:
    """The ``data`` view's record of an item put (pure: rebuilds give the same bytes)."""
    ttl = NO_TTL if event.ttl_minutes is None else float(event.ttl_minutes)
    header = RECORD.pack(RECORD_V1, event.updated_at, ttl, len(event.vectors))
    return header + event.value


class ItemsProjection:
    """The item views of one store session (``data``, ``items``, ``created``, ``exp``)."""

    name = "items"

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[ops.Op]:
        match event:
            case ItemPut():
                m = member(event.namespace, event.key)
                out = [
                    ops.hsetnx(keys.view("created"), m, repr(event.created_at)),
                    ops.hset(keys.view("data"), m, record(event)),
                    ops.zadd(keys.view("items"), 0, m),
                ]
                if event.ttl_minutes is None:
                    out.append(ops.zrem(keys.view("exp"), m))
                else:
                    when = expiry_ms(event.updated_at, event.ttl_minutes)
                    out.append(ops.zadd(keys.view("exp"), when, m))
                return out
            case ItemDeleted():
                m = member(event.namespace, event.key)
                return [
                    ops.zrem(keys.view("items"), m),
                    ops.hdel(keys.view("data"), m),
                    ops.hdel(keys.view("created"), m),
                    ops.zrem(keys.view("exp"), m),
                ]
            case _:
                return []

    def view_keys(self, keys: SessionKeys) -> Sequence[str]:
        return [keys.view(n) for n in VIEW_NAMES]


# The read side of the item views: every read op of one store batch in one call.
#
# KEYS: [1] log, [2] items, [3] data, [4] created, [5] exp.
# ARGV: [1] catch-up id ('' = none): if the log has entries after it, the script returns
#       {1, entries} (at most ARGV[2] of them) and does nothing else, so an in-process
#       vector index can catch up and retry; [2] catch-up page size; [3..] read ops,
#       each msgpack-encoded (read with the typed reader below):
#   {'g', member, refresh}                               -> {record, created} | {}
#   {'s', lo, hi, filter, offset, limit, refresh}        -> {m, record, created, ...}
#   {'v', filter, offset, limit, refresh, fill, lo, hi, candidates...}
#                                   -> {matched, n_scored, m, record, created, ...}
#   {'n', lo, hi, conditions, max_depth, offset, limit}   -> {namespace bytes...}
# Reply: {0, result per op}.
#
# Filters are programs of conditions {path, code, arg} compiled by the store core from
# LangGraph's filter dicts: 'eq'/'ne' (arg: msgpack operand, Python equality),
# 'gt'/'ge'/'lt'/'le' (arg: number, compared as Python's float()), 'd' (is a dict),
# 'l' (is a list of length arg). Item values are decoded by a small typed msgpack
# reader (cmsgpack cannot tell [] from {}, nor keep nil inside lists).
ITEMS_READ = LuaScript(
    "store_read",
    r"""
local log, items, data, created, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

if ARGV[1] ~= '' then
  local fresh = redis.call('XRANGE', log, '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
  if #fresh > 0 then return {1, fresh} end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local has_exp = redis.call('ZCARD', exp) > 0
local byte, sub, unpack_ = string.byte, string.sub, struct.unpack

-- typed msgpack reader -------------------------------------------------------------
local NIL = {}
local dec
local function dec_array(s, i, n)
  local out = {_t = 'l', n = n}
  for j = 1, n do out[j], i = dec(s, i) end
  return out, i
end
local function dec_map(s, i, n)
  local kv = {}
  for _ = 1, n do
    local k
    k, i = dec(s, i)
    kv[k], i = dec(s, i)
  end
  return {_t = 'd', k = kv, n = n}, i
end
local function raw(s, i, n, tag)
  local v = sub(s, i, i + n - 1)
  if tag then return {_t = tag, s = v}, i + n end
  return v, i + n
end
dec = function(s, i)
  local b = byte(s, i)
  if b < 0x80 then return b, i + 1 end
  if b >= 0xe0 then return b - 256, i + 1 end
  if b < 0x90 then return dec_map(s, i + 1, b - 0x80) end
  if b < 0xa0 then return dec_array(s, i + 1, b - 0x90) end
  if b < 0xc0 then return raw(s, i + 1, b - 0xa0) end
  if b == 0xc0 then return NIL, i + 1 end
  if b == 0xc2 then return false, i + 1 end
  if b == 0xc3 then return true, i + 1 end
  if b == 0xc4 then return raw(s, i + 2, byte(s, i + 1), 'b') end
  if b == 0xc5 then return raw(s, i + 3, unpack_('>I2', s, i + 1), 'b') end
  if b == 0xc6 then return raw(s, i + 5, unpack_('>I4', s, i + 1), 'b') end
  if b == 0xc7 then return raw(s, i + 3, byte(s, i + 1), 'x') end
  if b == 0xc8 then return raw(s, i + 4, unpack_('>I2', s, i + 1), 'x') end
  if b == 0xc9 then return raw(s, i + 6, unpack_('>I4', s, i + 1), 'x') end
  if b == 0xca then return unpack_('>f', s, i + 1), i + 5 end
  if b == 0xcb then return unpack_('>d', s, i + 1), i + 9 end
  if b == 0xcc then return byte(s, i + 1), i + 2 end
  if b == 0xcd then return unpack_('>I2', s, i + 1), i + 3 end
  if b == 0xce then return unpack_('>I4', s, i + 1), i + 5 end
  if b == 0xcf then return unpack_('>I8', s, i + 1), i + 9 end
  if b == 0xd0 then return unpack_('>i1', s, i + 1), i + 2 end
  if b == 0xd1 then return unpack_('>i2', s, i + 1), i + 3 end
  if b == 0xd2 then return unpack_('>i4', s, i + 1), i + 5 end
  if b == 0xd3 then return unpack_('>i8', s, i + 1), i + 9 end
  if b >= 0xd4 and b <= 0xd8 then return raw(s, i + 2, 2 ^ (b - 0xd4), 'x') end
  if b == 0xd9 then return raw(s, i + 2, byte(s, i + 1)) end
  if b == 0xda then return raw(s, i + 3, unpack_('>I2', s, i + 1)) end
  if b == 0xdb then return raw(s, i + 5, unpack_('>I4', s, i + 1)) end
  if b == 0xdc then return dec_array(s, i + 3, unpack_('>I2', s, i + 1)) end
  if b == 0xdd then return dec_array(s, i + 5, unpack_('>I4', s, i + 1)) end
  if b == 0xde then return dec_map(s, i + 3, unpack_('>I2', s, i + 1)) end
  if b == 0xdf then return dec_map(s, i + 5, unpack_('>I4', s, i + 1)) end
  return error('streamstate: bad msgpack byte ' .. b)
end

-- Python equality and float() -----------------------------------------------------
local function num(x)
  local tx = type(x)
  if tx == 'number' then return x end
  if tx == 'boolean' then return x and 1 or 0 end
end
local function eq(a, b)
  local na, nb = num(a), num(b)
  if na or nb then return na ~= nil and nb ~= nil and na == nb end
  if type(a) ~= 'table' or type(b) ~= 'table' or a == NIL or b == NIL then return a == b end
  if a._t ~= b._t or a.n ~= b.n then return false end
  if a._t == 'l' then
    for j = 1, a.n do if not eq(a[j], b[j]) then return false end end
    return true
  end
  if a._t == 'd' then
    for k, v in pairs(a.k) do
      local w = b.k[k]
      if w == nil or not eq(v, w) then return false end
    end
    return true
  end
  return a.s == b.s
end
local function as_float(x)
  local n = num(x)
  if n then return n end
  if type(x) ~= 'string' then return nil end
  local s = string.lower(string.match(x, '^%s*(.-)%s*$'))
  if s == 'inf' or s == '+inf' or s == 'infinity' or s == '+infinity' then return math.huge end
  if s == '-inf' or s == '-infinity' then return -math.huge end
  if s == 'nan' or s == '+nan' or s == '-nan' then return 0 / 0 end
  if string.find(s, '^[+-]?%d*%.?%d*e?[+-]?%d*$') then return tonumber(s) end
end

-- filters ---------------------------------------------------------------------------
local function at(v, path)
  for _, step in ipairs(path) do
    if type(v) ~= 'table' then return NIL end
    if type(step) == 'string' then
      if v._t ~= 'd' then return NIL end
      v = v.k[step]
    else
      if v._t ~= 'l' then return NIL end
      v = v[step]
    end
    if v == nil then return NIL end
  end
  return v
end
local function passes(conds, value)
  for _, c in ipairs(conds) do
    local v, code, arg = at(value, c[1]), c[2], c[3]
    local ok
    if code == 'eq' then ok = eq(v, (dec(arg, 1)))
    elseif code == 'ne' then ok = not eq(v, (dec(arg, 1)))
    elseif code == 'd' then ok = type(v) == 'table' and v._t == 'd'
    elseif code == 'l' then ok = type(v) == 'table' and v._t == 'l' and v.n == arg
    else
      local x = as_float(v)
      if x == nil then ok = false
      elseif code == 'gt' then ok = x > arg
      elseif code == 'ge' then ok = x >= arg
      elseif code == 'lt' then ok = x < arg
      elseif code == 'le' then ok = x <= arg
      else return error('streamstate: unknown filter op ' .. tostring(code)) end
    end
    if not ok then return false end
  end
  return true
end

-- items -----------------------------------------------------------------------------
local HEADER = 22  -- 21-byte header, then the value
local function header(rec)
  local _, _, ttl, nvec = unpack_('>Bddi', rec)
  return ttl, nvec
end
local function alive(m)
  if not has_exp then return true end
  local at_ms = redis.call('ZSCORE', exp, m)
  return (not at_ms) or tonumber(at_ms) > now
end
local function refresh(m, rec)
  local ttl = header(rec)
  if ttl >= 0 then redis.call('ZADD', exp, now + ttl * 60000, m) end
end
local function matches(conds, rec)
  if #conds == 0 then return true end
  return passes(conds, (dec(rec, HEADER)))
end
local function emit(out, m, rec, refresh_ttl)
  out[#out + 1] = m
  out[#out + 1] = rec
  out[#out + 1] = redis.call('HGET', created, m) or ''
  if refresh_ttl then refresh(m, rec) end
end

local function scan(lo, hi, visit)
  local cursor = lo
  while true do
    local page = redis.call('ZRANGEBYLEX', items, cursor, hi, 'LIMIT', 0, 256)
    if #page == 0 then return end
    local recs = redis.call('HMGET', data, unpack(page))
    for j, m in ipairs(page) do
      if recs[j] and alive(m) and visit(m, recs[j]) then return end
    end
    if #page < 256 then return end
    cursor = '(' .. page[#page]
  end
end

local function get(op)
  local m = op[2]
  local rec = redis.call('HGET', data, m)
  if not rec or not alive(m) then return {} end
  if op[3] == 1 then refresh(m, rec) end
  return {rec, redis.call('HGET', created, m) or ''}
end

local function search(op)
  local conds, offset, limit, refresh_ttl = op[4], op[5], op[6], op[7] == 1
  local out, seen = {}, 0
  if limit <= 0 then return out end
  scan(op[2], op[3], function(m, rec)
    if not matches(conds, rec) then return false end
    seen = seen + 1
    if seen <= offset then return false end
    emit(out, m, rec, refresh_ttl)
    return #out >= 3 * limit
  end)
  return out
end

local function vector(op)
  local conds, offset, limit, refresh_ttl = op[2], op[3], op[4], op[5] == 1
  local out, matched = {0, 0}, 0
  for j = 9, #op do
    if matched >= offset + limit then break end
    local m = op[j]
    local rec = redis.call('HGET', data, m)
    if rec and alive(m) and matches(conds, rec) then
      matched = matched + 1
      if matched > offset then emit(out, m, rec, refresh_ttl) end
    end
  end
  out[1], out[2] = matched, (#out - 2) / 3
  if op[6] == 1 and out[2] < limit then
    local room = limit - out[2]
    scan(op[7], op[8], function(m, rec)
      local _, nvec = header(rec)
      if nvec > 0 or not matches(conds, rec) then return false end
      emit(out, m, rec, refresh_ttl)
      room = room - 1
      return room <= 0
    end)
  end
  return out
end

local function split(ns)
  local labels, start = {}, 1
  while true do
    local z = string.find(ns, '\0', start, true)
    if not z then labels[#labels + 1] = sub(ns, start); return labels end
    labels[#labels + 1] = sub(ns, start, z - 1)
    start = z + 1
  end
end
local function fits(labels, cond)
  local kind, pat = cond[1], cond[2]
  local n, k = #labels, #pat
  if n < k then return false end
  for j = 1, k do
    local want = pat[j]
    local got = kind == 'prefix' and labels[j] or labels[n - k + j]
    if want ~= '' and want ~= got then return false end
  end
  return true
end
local function ns_alive(ns)
  if not has_exp then return true end
  local found = false
  scan('[' .. ns .. '\0\0', '(' .. ns .. '\0\1', function() found = true; return true end)
  return found
end

local function namespaces(op)
  local hi, conds, depth, offset, limit = op[3], op[4], op[5], op[6], op[7]
  local out, seen, cursor = {}, 0, op[2]
  if limit <= 0 then return out end
  while true do
    local first = redis.call('ZRANGEBYLEX', items, cursor, hi, 'LIMIT', 0, 1)[1]
    if not first then return out end
    local ns = sub(first, 1, string.find(first, '\0\0', 1, true) - 1)
    local labels = split(ns)
    local ok = true
    for _, cond in ipairs(conds) do ok = ok and fits(labels, cond) end
    cursor = '[' .. ns .. '\0\1'
    if ok and ns_alive(ns) then
      local shown = ns
      if depth >= 0 and #labels >= depth then
        shown = table.concat(labels, '\0', 1, depth)
        cursor = depth == 0 and hi or ('[' .. shown .. '\1')
      end
      seen = seen + 1
      if seen > offset then
        out[#out + 1] = shown
        if #out >= limit then return out end
      end
      if depth == 0 then return out end
    end
  end
end

-- ops arrive as msgpack too (cmsgpack cannot read the bin type): untagged to plain Lua
local function plain(v)
  if type(v) ~= 'table' then return v end
  if v == NIL then return false end
  if v._t == 'l' then
    local out = {}
    for j = 1, v.n do out[j] = plain(v[j]) end
    return out
  end
  if v._t == 'd' then
    local out = {}
    for k, w in pairs(v.k) do out[k] = plain(w) end
    return out
  end
  return v.s
end

local reply = {0}
for j = 3, #ARGV do
  local op = plain((dec(ARGV[j], 1)))
  local kind, res = op[1]
  if kind == 'g' then res = get(op)
  elseif kind == 's' then res = search(op)
  elseif kind == 'v' then res = vector(op)
  elseif kind == 'n' then res = namespaces(op)
  else return redis.error_reply('ERR streamstate: unknown store read ' .. tostring(kind)) end
  reply[#reply + 1] = res
end
return reply
""",
)
