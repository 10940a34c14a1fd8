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

Views (defined by :meth:`ItemsProjection.apply_at`, which a rebuild replays; the write
script :data:`STORE_WRITE` writes the same values atomically with the append, and the
tests rebuild after every kind of write to check that they agree):

``items``
    Sorted set of members, all with score 0 (ordered lexicographically).
``data``
    Hash member -> ``<entry id>|`` and a record: a 21-byte header (version,
    ``updated_at``, TTL minutes or -1, number of vectors) followed by the value's
    msgpack bytes, as in the event. The entry id is the item's latest ``ItemPut``.
``created``
    Hash member -> ``<entry id>|<created_at>`` (seconds); written insert-if-absent, so
    an update keeps the creation time, and the entry is the first ``ItemPut`` of the
    item's log entries: the one that carries ``created_at``.
``exp``
    Sorted set member -> expiry (Unix ms) for items written with a TTL, as the puts
    set it.

Compaction. The log stays the source of truth of what is live: it holds, per live
item, the latest put and (once the item was overwritten) a *birth* entry, and nothing
else that a rebuild would need. The write script (:data:`STORE_WRITE`) deletes an
entry from the stream as soon as it is provably superseded, since the views name the
only entries that matter:

* an overwrite deletes the previous latest put. When that put was also the item's
  first (it carries ``created_at``), the script first appends a birth entry: an
  ``ItemPut`` of ``{}`` with the original ``created_at``, built from a template the
  client sends (:func:`birth_prefix`), so the new put alone need not know it;
* a delete deletes both, and appends an ``ItemDeleted`` (for tails and other
  processes' vector indexes; no rebuild needs it). A delete of nothing writes nothing,
  and tombstones are not kept in a log that holds nothing else;
* an expired item is swept (a few per write, and by ``sweep``): both entries and its
  views go, with no event.

Deleting there costs a write a few microseconds of server time; finding dead entries
later instead (a pass over the log once they outnumber the live ones) costs far more
per entry, and stalls the write that triggers it.

Deleting an entry frees its stream node once every entry of the node is deleted. The
rest (*slack*: deleted entries in nodes that still hold live ones, and tombstones) is
reclaimed by a *repack*: once the entries deleted since the last repack outnumber the
live ones (and :data:`REPACK_MIN`), tombstones are deleted and the live entries are
copied, ids and all, into a fresh stream a few per write (:data:`COPY_STEP`); deletes
meanwhile hit both streams, and the step that finds no entry after its cursor (the log
still ends where the copy does) renames the copy over the log. Entry ids never change,
so vector indexes and snapshots stay valid; ``entries-added`` is kept equal to the
log's length, since nothing a rebuild needs was removed.

Store state outside the views (never written by a rebuild, which leaves it alone):
``refreshed`` (sorted set member -> expiry extended by reads with ``refresh_ttl``;
a read is not an event, so the log-derived ``exp`` keeps the put's expiry and an item
lives while either is in the future), ``compaction`` (hash: ``dead`` entries deleted
since the last repack, ``cursor`` of a repack in progress, ``sweep`` rank), the
``tombstones`` set (ids of ``ItemDeleted`` entries) and ``repack`` (the copy stream).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import msgspec

from streamstate.eventlog import ops
from streamstate.eventlog.codec import FORMAT_V1
from streamstate.eventlog.events import Event, ItemDeleted, ItemPut
from streamstate.eventlog.keys import SessionKeys
from streamstate.eventlog.valkey.scripts import LuaScript

RECORD = struct.Struct(">Bddi")
"""Record header: format version, updated_at (s), TTL minutes (-1: none), vector count."""
RECORD_V1 = 1
NO_TTL = -1.0
VIEW_NAMES = ("items", "data", "created", "exp")
"""The views rebuilt from the log."""
STATE_NAMES = ("refreshed", "compaction", "tombstones", "repack")
"""The store's keys that are not views of the log (see the module docstring)."""
EMPTY_VALUE = b"\x80"
"""The value of a birth entry: ``{}`` in msgpack."""
REPACK_MIN = 64
"""A repack starts once this many entries (and as many as are live) were deleted."""
COPY_STEP = 128
"""Entries a write copies for a repack in progress (plus as many as it appends)."""
SWEEP_STEP = 16
"""Expired items a write examines for removal."""

_encoder = msgspec.msgpack.Encoder()
_BIRTH_TAIL = b"\xcb" + bytes(8) + b"\xcb" + bytes(8) + b"\xc0\x90"
"""How a birth event ends: created_at and updated_at (float64), no TTL, no vectors."""


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
    """The record of an item put, without its entry id (pure: rebuilds give the same bytes)."""
    ttl = NO_TTL if event.ttl_minutes is None else float(event.ttl_minutes)
    header = RECORD.pack(RECORD_V1, event.updated_at, ttl, len(event.vectors))
    return header + event.value


def split_ref(raw: bytes) -> tuple[str | None, bytes]:
    """A ``data`` or ``created`` value as ``(entry id, rest)``; values written before
    the views kept entry ids give ``(None, raw)``."""
    if raw[:1].isdigit():
        bar = raw.find(b"|")
        if bar > 0:
            return raw[:bar].decode(), raw[bar + 1 :]
    return None, raw


def created_at(raw: bytes) -> float | None:
    """The creation time a ``created`` value holds (``None`` for an empty one)."""
    return float(split_ref(raw)[1]) if raw else None


def birth_prefix(event: ItemPut) -> bytes:
    """The stored bytes of the item's birth entry, up to its two timestamps.

    A birth entry is ``ItemPut(namespace, key, {}, t, t, None, [])`` encoded as the
    codec's uncompressed, unencrypted format; the write script appends the two float64
    timestamps (the item's ``created_at``, which only the views know) and the tail.
    """
    body = _encoder.encode(ItemPut(event.namespace, event.key, EMPTY_VALUE, 0.0, 0.0, None, []))
    if not body.endswith(_BIRTH_TAIL):  # pragma: no cover - msgspec's encoding is fixed
        raise AssertionError("unexpected encoding of a birth entry")
    return bytes((FORMAT_V1, 0)) + body[: -len(_BIRTH_TAIL)]


def birth_entry(prefix: bytes, created: float) -> bytes:
    """What the write script makes of :func:`birth_prefix` (for tests and tools)."""
    stamp = b"\xcb" + struct.pack(">d", created)
    return prefix + stamp + stamp + _BIRTH_TAIL[-2:]


class ItemsProjection:
    """The item views of one store session (``data``, ``items``, ``created``, ``exp``)."""

    name = "items"

    def apply(self, keys: SessionKeys, event: Event) -> Sequence[ops.Op]:
        """The ops of an event appended alone (its id is the append's placeholder)."""
        return self.apply_at(keys, event, "\x00@1", ())

    def apply_at(
        self, keys: SessionKeys, event: Event, at: str, stored: Sequence[bytes] = ()
    ) -> Sequence[ops.Op]:
        """The ops of the event stored at entry ``at`` (an id, or an append placeholder)."""
        match event:
            case ItemPut():
                m = member(event.namespace, event.key)
                out = [
                    ops.hsetnx(keys.view("created"), m, f"{at}|{event.created_at!r}"),
                    ops.hset(keys.view("data"), m, at.encode() + b"|" + record(event)),
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


def read_keys(keys: SessionKeys) -> list[str]:
    """KEYS of :data:`ITEMS_READ`: the log, the views, then ``refreshed``."""
    return [keys.log, *(keys.view(n) for n in VIEW_NAMES), keys.view("refreshed")]


def write_keys(keys: SessionKeys) -> list[str]:
    """KEYS of :data:`STORE_WRITE` and :data:`STORE_MAINTAIN`: the log, the views, the
    store state (see the module docstring)."""
    return [keys.log, *(keys.view(n) for n in VIEW_NAMES), *(keys.view(n) for n in STATE_NAMES)]


# What the write and maintenance scripts share: keys, the clock, liveness, deleting
# entries (from a repack in progress too), forgetting items, the sweep and the repack.
_COMPACTION = r"""
local log, items, data, created, exp = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local refreshed, meta, tombs, shadow = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local dead, last, swapped = 0, nil, false
local now_ms
local function now()
  if not now_ms then
    local t = redis.call('TIME')
    now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_ms
end

-- Every read runs before the first write, and one cheap read of each key proves its
-- type (TYPE costs more), so a key of the wrong type aborts the script before it has
-- changed anything.
local function read(k, need, cmd, ...)
  local r = redis.pcall(cmd, k, ...)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      error({err = 'WRONGTYPE streamstate: ' .. k .. ' holds a ' ..
        redis.call('TYPE', k)['ok'] .. ', expected a ' .. need})
    end
    error(r)
  end
  return r
end
read(log, 'stream', 'XLEN')
read(items, 'zset', 'ZSCORE', '')
read(data, 'hash', 'HEXISTS', '')
read(created, 'hash', 'HEXISTS', '')
read(exp, 'zset', 'ZSCORE', '')
read(refreshed, 'zset', 'ZSCORE', '')
read(tombs, 'set', 'SCARD')
local repacking = read(meta, 'hash', 'HGET', 'cursor')
if repacking then read(shadow, 'stream', 'XLEN') end

-- '<entry id>|<rest>' -> entry id (nil for a value written before ids were kept)
local function id_of(v)
  if not v then return nil end
  local b = string.byte(v, 1)
  if not b or b < 48 or b > 57 then return nil end
  local bar = string.find(v, '|', 1, true)
  return bar and string.sub(v, 1, bar - 1) or nil
end
local function rest_of(v)
  if not v then return nil end
  local b = string.byte(v, 1)
  if b and b >= 48 and b <= 57 then
    local bar = string.find(v, '|', 1, true)
    if bar then return string.sub(v, bar + 1) end
  end
  return v
end

local function expired(m)
  local at = redis.call('ZSCORE', exp, m)
  if not at or tonumber(at) > now() then return false end
  local r = redis.call('ZSCORE', refreshed, m)
  return not (r and tonumber(r) > now())
end

-- delete entries from the log, and from the copy of a repack in progress
local function drop(ids)
  for s = 1, #ids, 1000 do
    local chunk = {unpack(ids, s, math.min(s + 999, #ids))}
    dead = dead + redis.call('XDEL', log, unpack(chunk))
    if repacking then redis.call('XDEL', shadow, unpack(chunk)) end
  end
end

-- an item's views and log entries go (a delete, an expiry)
local function forget(m, rec, cre)
  local latest, born = id_of(rec), id_of(cre)
  local ids = {}
  if latest then ids[#ids + 1] = latest end
  if born and born ~= latest then ids[#ids + 1] = born end
  drop(ids)
  redis.call('ZREM', items, m)
  redis.call('HDEL', data, m)
  redis.call('HDEL', created, m)
  redis.call('ZREM', exp, m)
  redis.call('ZREM', refreshed, m)
end

-- Examine up to `budget` expired items, by rank from the cursor in meta: items kept
-- alive by a read's refresh stay behind it until they expire or are written.
-- Returns how many were removed, and whether the sweep reached the unexpired ones.
local function sweep(budget)
  if redis.call('ZCARD', exp) == 0 then return 0, true end
  if budget <= 0 then return 0, false end
  local start = tonumber(redis.call('HGET', meta, 'sweep') or '0')
  local rank, swept, finished = start, 0, false
  while budget > 0 do
    local page = redis.call('ZRANGE', exp, rank, rank + budget - 1, 'WITHSCORES')
    local done = #page == 0
    for j = 1, #page, 2 do
      local m = page[j]
      if tonumber(page[j + 1]) > now() then done = true; break end
      budget = budget - 1
      if expired(m) then
        forget(m, redis.call('HGET', data, m), redis.call('HGET', created, m))
        swept = swept + 1
      else
        rank = rank + 1
      end
    end
    if done then rank, finished = 0, true; break end
  end
  if rank ~= start then redis.call('HSET', meta, 'sweep', rank) end
  return swept, finished
end

local function stream_info(key)
  local info, f = redis.call('XINFO', 'STREAM', key), {}
  for j = 1, #info, 2 do f[info[j]] = info[j + 1] end
  return f
end

-- Tombstones go, then a copy of the log's live entries starts (if any are left).
local function start_repack()
  local ids = redis.call('SMEMBERS', tombs)
  drop(ids)
  redis.call('DEL', tombs)
  redis.call('HDEL', meta, 'dead')
  if redis.call('XLEN', log) == 0 then return end  -- every node was freed
  if #redis.call('XINFO', 'GROUPS', log) > 0 then return end  -- a copy would lose them
  redis.call('DEL', shadow)
  repacking = '0-0'
  redis.call('HSET', meta, 'cursor', repacking)
end

-- Copy up to `budget` entries after the cursor. The step that finds fewer has copied
-- every entry the log holds (the log ends at the cursor): the copy replaces the log.
local function copy(budget)
  local page = redis.call('XRANGE', log, '(' .. repacking, '+', 'COUNT', budget)
  for _, e in ipairs(page) do redis.call('XADD', shadow, e[1], unpack(e[2])) end
  if #page > 0 then repacking = page[#page][1] end
  if #page >= budget then
    redis.call('HSET', meta, 'cursor', repacking)
    return
  end
  local f = stream_info(log)
  last = f['last-generated-id']
  if redis.call('EXISTS', shadow) == 1 then
    redis.call('XSETID', shadow, last, 'ENTRIESADDED', redis.call('XLEN', shadow),
      'MAXDELETEDID', f['max-deleted-entry-id'])
    redis.call('RENAME', shadow, log)
  end
  redis.call('HDEL', meta, 'cursor')
  repacking = nil
  swapped = true
end

-- After deletes: count them, start a repack when they outnumber the live entries (or
-- only tombstones are left), and keep entries-added equal to the length.
local function settle(force_repack, budget)
  local live
  if dead > 0 then
    local total = tonumber(redis.call('HINCRBY', meta, 'dead', dead))
    live = redis.call('XLEN', log)
    -- tombstones count as dead: when few entries were deleted, only compare counts
    local only_tombstones = live <= total and live == redis.call('SCARD', tombs)
    if not repacking and live > 0 and (total >= math.max(live, REPACK_MIN) or only_tombstones) then
      start_repack()
    end
  end
  if force_repack and not repacking and redis.call('EXISTS', log) == 1 then start_repack() end
  if repacking and budget > 0 then copy(budget) end
  if (dead > 0 or swapped) and redis.call('EXISTS', log) == 1 then
    if not last then last = stream_info(log)['last-generated-id'] end
    redis.call('XSETID', log, last, 'ENTRIESADDED', redis.call('XLEN', log))
  end
end
"""

_CONSTANTS = f"local REPACK_MIN, COPY_STEP, SWEEP_STEP = {REPACK_MIN}, {COPY_STEP}, {SWEEP_STEP}\n"

# The write side: one call per store batch of puts and deletes.
#
# KEYS: see :func:`write_keys`; then, on a single server, the session registry.
# ARGV: [1] '1' when the batch holds a put (a retry whose puts all landed is a
#       duplicate), [2] session tag for the registry, [3] n events, then per event:
#   'p', member, entry, record, created_at text, expiry ms ('' none), birth prefix
#        ('' none: an item keeps its first put instead)
#   'd', member, entry
# Reply: {1, entry id...} written; {0, ''} duplicate.
STORE_WRITE = LuaScript(
    "store_write",
    _CONSTANTS
    + _COMPACTION
    + r"""
local check_noop, n = ARGV[1] == '1', tonumber(ARGV[3])
local evs, i = {}, 4
for j = 1, n do
  local ev = {kind = ARGV[i], m = ARGV[i + 1], e = ARGV[i + 2]}
  if ev.kind == 'p' then
    ev.body, ev.at, ev.exp, ev.birth = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
    i = i + 7
  elseif ev.kind == 'd' then
    i = i + 3
  else
    return redis.error_reply('ERR streamstate: unknown store write ' .. tostring(ev.kind))
  end
  ev.rec = redis.call('HGET', data, ev.m)
  ev.cre = redis.call('HGET', created, ev.m)
  evs[j] = ev
end
local registered = #KEYS < 10 or read(KEYS[10], 'set', 'SISMEMBER', ARGV[2]) == 1

if check_noop then
  local same = true
  for _, ev in ipairs(evs) do
    if ev.kind == 'p' and rest_of(ev.rec) ~= ev.body then same = false; break end
  end
  if same then return {0, ''} end
end

local reply, appended = {1}, 0
local function append(entry)
  last = redis.call('XADD', log, '*', 'e', entry)
  appended = appended + 1
  return last
end
local function birth(prefix, at)
  local stamp = '\203' .. struct.pack('>d', tonumber(at))
  return prefix .. stamp .. stamp .. '\192\144'
end

for _, ev in ipairs(evs) do
  local m, rec, cre = ev.m, ev.rec, ev.cre
  if rec and expired(m) then
    forget(m, rec, cre)
    rec, cre = nil, nil
  end
  if ev.kind == 'p' then
    local id
    if rec then
      local prev, born = id_of(rec), id_of(cre)
      if prev and born == prev and ev.birth ~= '' then
        -- the item's one entry carries its created_at: a birth entry takes that over
        local at = rest_of(cre)
        local bid = append(birth(ev.birth, at))
        id = append(ev.e)
        redis.call('HSET', created, m, bid .. '|' .. at)
        drop({prev})
      else
        id = append(ev.e)
        if prev and born and prev ~= born then drop({prev}) end
      end
    else
      id = append(ev.e)
      redis.call('HSET', created, m, id .. '|' .. ev.at)
    end
    redis.call('HSET', data, m, id .. '|' .. ev.body)
    redis.call('ZADD', items, 0, m)
    if ev.exp == '' then redis.call('ZREM', exp, m) else redis.call('ZADD', exp, ev.exp, m) end
    redis.call('ZREM', refreshed, m)
    reply[#reply + 1] = id
  elseif rec then
    local id = append(ev.e)
    redis.call('SADD', tombs, id)
    dead = dead + 1
    forget(m, rec, cre)
    reply[#reply + 1] = id
  end
end
if not registered and appended > 0 then redis.call('SADD', KEYS[10], ARGV[2]) end

sweep(SWEEP_STEP)
settle(false, COPY_STEP + appended)
return reply
""",
)

# Maintenance: sweeping, deleting entries no view names, repacking; each call bounded.
#
# KEYS: see :func:`write_keys`.
# ARGV: [1] expired items to examine, [2] entries to copy, [3] '1' to start a repack if
#       none runs, then candidates (entry id, member, 'p' | 'd'): entries a client read
#       from the log; each is deleted unless a view names it (an item whose views name
#       no entry, written before ids were kept, keeps all of its entries).
# Reply: {items swept, entries deleted, 1 if a repack is in progress, 1 if the sweep
#        reached the unexpired items, the log's length}.
STORE_MAINTAIN = LuaScript(
    "store_maintain",
    _CONSTANTS
    + _COMPACTION
    + r"""
local unnamed = {}
for j = 4, #ARGV, 3 do
  local id, m, kind = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  if kind == 'd' then
    redis.call('SREM', tombs, id)
    unnamed[#unnamed + 1] = id
  else
    local rec, cre = redis.call('HGET', data, m), redis.call('HGET', created, m)
    local latest, born = id_of(rec), id_of(cre)
    if (not rec or latest) and (not cre or born) and latest ~= id and born ~= id then
      unnamed[#unnamed + 1] = id
    end
  end
end
drop(unnamed)
local deleted = dead
local swept, swept_all = sweep(tonumber(ARGV[1]))
settle(ARGV[3] == '1', tonumber(ARGV[2]))
return {swept, deleted, repacking and 1 or 0, swept_all and 1 or 0, redis.call('XLEN', log)}
""",
)


# The read side of the item views: every read op of one store batch in one call.
#
# KEYS: see :func:`read_keys`: [1] log, [2] items, [3] data, [4] created, [5] exp,
#       [6] refreshed.
# ARGV: [1] catch-up id ('' = none): if the log has entries after it, the script returns
#       {1, entries} (at most ARGV[2] of them) and does nothing else, so an in-process
#       vector index can catch up and retry; [2] catch-up page size; [3..] read ops,
#       each msgpack-encoded (read with the typed reader below):
#   {'g', member, refresh}                               -> {record, created} | {}
#   {'s', lo, hi, filter, offset, limit, refresh}        -> {m, record, created, ...}
#   {'v', filter, offset, limit, refresh, fill, lo, hi, candidates...}
#                         -> {matched, n_scored, {gone...}, m, record, created, ...}
#   {'n', lo, hi, conditions, max_depth, offset, limit}   -> {namespace bytes...}
# Reply: {0, result per op}. ``gone`` are candidates the store no longer holds (their
# removal left no entry the index could see: a sweep, or a repack that dropped the
# tombstone); records and created values are returned as stored ('<entry id>|...').
#
# A read with refresh sets the item's ``refreshed`` expiry to now + its TTL; an item
# lives while its ``exp`` or its ``refreshed`` expiry is in the future.
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
local refreshed = KEYS[6]

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
-- a record is '<entry id>|' (absent when written before ids were kept), a 21-byte
-- header, then the value
local function body_at(rec)
  local b = byte(rec, 1)
  if b >= 48 and b <= 57 then return string.find(rec, '|', 1, true) + 1 end
  return 1
end
local function header(rec)
  local _, _, ttl, nvec = unpack_('>Bddi', rec, body_at(rec))
  return ttl, nvec
end
local function alive(m)
  if not has_exp then return true end
  local at_ms = redis.call('ZSCORE', exp, m)
  if (not at_ms) or tonumber(at_ms) > now then return true end
  local until_ms = redis.call('ZSCORE', refreshed, m)
  return until_ms ~= false and tonumber(until_ms) > now
end
local function refresh(m, rec)
  local ttl = header(rec)
  if ttl >= 0 then redis.call('ZADD', refreshed, now + ttl * 60000, m) end
end
local function matches(conds, rec)
  if #conds == 0 then return true end
  return passes(conds, (dec(rec, body_at(rec) + 21)))
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
  local out, matched, gone = {0, 0, {}}, 0, {}
  for j = 9, #op do
    if matched >= offset + limit then break end
    local m = op[j]
    local rec = redis.call('HGET', data, m)
    if not rec then
      gone[#gone + 1] = m
    elseif alive(m) and matches(conds, rec) then
      matched = matched + 1
      if matched > offset then emit(out, m, rec, refresh_ttl) end
    end
  end
  out[1], out[2], out[3] = matched, (#out - 3) / 3, gone
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
