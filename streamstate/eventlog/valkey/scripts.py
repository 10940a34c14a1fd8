"""Server-side Lua scripts of the Valkey event log.

Scripts are not rolled back when they fail half-way, so the append script validates
everything it can (op codes, key types, idempotency) before it writes anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from streamstate.eventlog.ops import OP_SPECS


@dataclass(frozen=True)
class LuaScript:
    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# KEYS: [1] log, [2] idempotency hash, [3..] keys named by ops.
# ARGV: [1] guard key index (0: none), [2] guard field, [3] idempotency field ('' none),
#       [4] '1' to skip the append when no content op would change anything,
#       [5] n events, then per event: m, the encoded event, its m values (stream fields
#       'e', '0'..'m-1'); then ops: code, key index, args...
# An op value starting with "\0@N" stands for the id of event N followed by the rest of
# the value; a view value "<ref>|<body>" is compared by its body alone (a retried write
# points at another entry but says the same thing).
# Reply: {1, id...} appended; {0, previous id or ''} duplicate.
_APPEND_BODY = r"""
local log, idem = KEYS[1], KEYS[2]
local gk, gf, idf = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local skip_noop, n = ARGV[4] == '1', tonumber(ARGV[5])
local entries, i = {}, 6
for j = 1, n do
  local m = tonumber(ARGV[i])
  local fields = {'e', ARGV[i + 1]}
  for k = 0, m - 1 do
    fields[#fields + 1] = tostring(k)
    fields[#fields + 1] = ARGV[i + 2 + k]
  end
  entries[j] = fields
  i = i + 2 + m
end
local function body(v)
  -- "<ref>|<body>" where ref is "\0@N.f" (an op's placeholder) or "ms-seq.f" (stored)
  if v then
    local s, e = string.find(v, '^%z@%d+%.[%we]+|')
    if not s then s, e = string.find(v, '^%d+%-%d+%.[%we]+|') end
    if s then return string.sub(v, e + 1) end
  end
  return v
end

-- Every read runs before the first write, so a key of the wrong type aborts the script
-- before it has changed anything. A read that an op needs anyway (HSETNX and HMAX read
-- the hash, SADD asks SMISMEMBER) proves the key's type; other keys get a TYPE check.
-- The log needs none: XADD is the first write.
local proven = {}
local function wrongtype(k, t, need)
  return redis.error_reply('WRONGTYPE streamstate: ' .. KEYS[k] .. ' holds a ' .. t ..
    ', expected a ' .. need)
end
-- HMGET / SMISMEMBER of many fields in chunks (unpack() is limited by the Lua C stack);
-- returns the replies, or nil and the error to return.
local function read(k, need, cmd, list)
  local out = {}
  for s = 1, #list, 4000 do
    local r = redis.pcall(cmd, KEYS[k], unpack(list, s, math.min(s + 3999, #list)))
    if type(r) == 'table' and r.err then
      if string.find(r.err, 'WRONGTYPE', 1, true) then
        return nil, wrongtype(k, redis.call('TYPE', KEYS[k])['ok'], need)
      end
      return nil, r
    end
    for y = 1, #r do out[s + y - 1] = r[y] end
  end
  proven[k] = need
  return out
end
if idf ~= '' then
  local prev = redis.call('HGET', idem, idf)
  if prev then return {0, prev} end
  proven[2] = 'hash'
end
if gk > 0 then
  if redis.call('HEXISTS', KEYS[gk], gf) == 1 then return {0, ''} end
  proven[gk] = 'hash'
end

-- arity, want (key type) and batched (a run of consecutive ops with the same code and
-- key becomes one command): rendered from ops.OP_SPECS
OP_TABLES
local runs = {}
while i <= #ARGV do
  local code = ARGV[i]
  local a = arity[code]
  if a == nil then
    return redis.error_reply('ERR streamstate: unknown op ' .. tostring(code))
  end
  local k = tonumber(ARGV[i + 1])
  if k == nil or KEYS[k] == nil then
    return redis.error_reply('ERR streamstate: op ' .. code .. ' names no key')
  end
  if i + 1 + a > #ARGV then
    return redis.error_reply('ERR streamstate: op ' .. code .. ' is missing arguments')
  end
  if (code == 'ZADD' or code == 'PEXPIRE') and tonumber(ARGV[i + 2]) == nil then
    return redis.error_reply('ERR streamstate: ' .. code .. ' ' ..
      (code == 'ZADD' and 'score' or 'ms') .. ' is not a number: ' .. ARGV[i + 2])
  end
  local last = runs[#runs]
  if not (last and batched[code] and last.code == code and last.k == k) then
    last = {code = code, k = k, a = {}, b = {}}
    runs[#runs + 1] = last
  end
  last.a[#last.a + 1] = ARGV[i + 2]
  last.b[#last.b + 1] = ARGV[i + 3]
  i = i + 2 + a
end

-- The read phase. ``run.cur`` holds what the key held before the script for the run's
-- fields (members), when no earlier op of the script writes that key.
local touched = {}
for k = 1, doomed do touched[k] = true; proven[k] = 'deleted' end
for _, run in ipairs(runs) do
  local code, k = run.code, run.k
  local need = want[code]
  if code == 'DEL' then proven[k] = 'deleted' end
  if not touched[k] and (code == 'HSETNX' or code == 'HMAX'
      or (code == 'HSET' and skip_noop)) then
    local cur, err = read(k, 'hash', 'HMGET', run.a)
    if err then return err end
    run.cur = cur
  elseif not touched[k] and code == 'SADD' then
    local cur, err = read(k, 'set', 'SMISMEMBER', run.a)
    if err then return err end
    run.cur = cur
  elseif need and proven[k] == nil and k ~= 1 then
    local t = redis.call('TYPE', KEYS[k])['ok']
    if t ~= 'none' and t ~= need then return wrongtype(k, t, need) end
    proven[k] = need
  end
  touched[k] = true
end

-- An append is a no-op when no hash-content op would change anything.
if skip_noop then
  local effective = false
  for _, run in ipairs(runs) do
    local c, k = run.code, KEYS[run.k]
    for x = 1, #run.a do
      local cur
      if c == 'HSETNX' or c == 'HSET' or c == 'HMAX' then
        if run.cur then cur = run.cur[x] else cur = redis.call('HGET', k, run.a[x]) end
      end
      if c == 'HSETNX' then effective = not cur
      elseif c == 'HSET' then effective = body(cur or nil) ~= body(run.b[x])
      elseif c == 'HMAX' then effective = (not cur) or cur < run.b[x]
      end
      if effective then break end
    end
    if effective then break end
  end
  if not effective then return {0, ''} end
end

pre_write()
local reply = {1}
for j = 1, n do
  reply[#reply + 1] = redis.call('XADD', log, '*', unpack(entries[j]))
end
local function resolve(v)
  if v and string.byte(v, 1) == 0 and string.byte(v, 2) == 64 then
    local nth, rest = string.match(v, '^%z@(%d+)(.*)$')
    return reply[1 + tonumber(nth)] .. rest
  end
  return v
end
-- the key names every entry of the append, so a repeat reports them all; an empty
-- append wrote no entry and records nothing (as every backend)
if idf ~= '' and n > 0 then redis.call('HSET', idem, idf, table.concat(reply, ',', 2)) end

local function call_chunked(cmd, k, args)
  for s = 1, #args, 4000 do
    redis.call(cmd, k, unpack(args, s, math.min(s + 3999, #args)))
  end
end
for _, run in ipairs(runs) do
  local c, k, a, b = run.code, KEYS[run.k], run.a, run.b
  if c == 'HSETNX' or c == 'SADD' then
    -- the fields (members) absent before, the first of a repeated one winning
    local cur = run.cur
    if not cur then
      cur = read(run.k, want[c], c == 'HSETNX' and 'HMGET' or 'SMISMEMBER', a)
    end
    local args, seen = {}, {}
    for y = 1, #a do
      if (not cur[y] or cur[y] == 0) and not seen[a[y]] then
        seen[a[y]] = true
        args[#args + 1] = a[y]
        if c == 'HSETNX' then args[#args + 1] = resolve(b[y]) end
      end
    end
    if #args > 0 then call_chunked(c == 'HSETNX' and 'HSET' or 'SADD', k, args) end
  elseif c == 'HMAX' then
    local v = resolve(b[1])
    local cur
    if run.cur then cur = run.cur[1] else cur = redis.call('HGET', k, a[1]) end
    if (not cur) or cur < v then redis.call('HSET', k, a[1], v) end
  elseif c == 'HSET' or c == 'ZADD' then
    local args = {}
    for y = 1, #a do
      args[#args + 1] = resolve(a[y])
      args[#args + 1] = resolve(b[y])
    end
    call_chunked(c, k, args)
  elseif c == 'HDEL' or c == 'ZREM' or c == 'SREM' then
    local args = {}
    for y = 1, #a do args[y] = resolve(a[y]) end
    call_chunked(c, k, args)
  elseif c == 'SET' then redis.call('SET', k, resolve(a[1]))
  elseif c == 'DEL' then redis.call('DEL', k)
  elseif c == 'PEXPIRE' then redis.call('PEXPIRE', k, a[1])
  end
end
return reply
"""


def op_tables_lua() -> str:
    """The Lua tables ``arity``, ``want`` and ``batched`` of :data:`OP_SPECS`."""

    def table(name: str, pairs: list[tuple[str, str]]) -> str:
        return f"local {name} = {{" + ", ".join(f"{k}={v}" for k, v in pairs) + "}"

    specs = OP_SPECS.items()
    return "\n".join([
        table("arity", [(code, str(spec.arity)) for code, spec in specs]),
        table("want", [(code, f"'{spec.key_type}'") for code, spec in specs if spec.key_type]),
        table("batched", [(code, "true") for code, spec in specs if spec.batched]),
    ])  # fmt: skip


_APPEND_BODY = _APPEND_BODY.replace("OP_TABLES", op_tables_lua(), 1)

APPEND = LuaScript("append", "local function pre_write() end\nlocal doomed = 0\n" + _APPEND_BODY)

# Compaction: replace a session's log and views in one step. ARGV[1] is the id the log
# must still end with ('' skips the check: a concurrent append makes the caller retry),
# ARGV[2] how many leading KEYS to delete once validation has passed; the rest is
# APPEND's layout. Reply: {-1, actual last id} on a lost race, else as APPEND.
REPLACE = LuaScript(
    "replace",
    r"""
local expected = table.remove(ARGV, 1)
local ndel = tonumber(table.remove(ARGV, 1))
if expected ~= '' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  local actual = (last[1] and last[1][1]) or ''
  if actual ~= expected then return {-1, actual} end
end
-- the first ndel keys are deleted before the writes: the read phase must not trust them
local doomed = ndel
local function pre_write()
  for i = 1, ndel do redis.call('DEL', KEYS[i]) end
end
"""
    + _APPEND_BODY,
)


# KEYS: keys to read. Reply per key: {type, contents} in a comparable form.
SNAPSHOT = LuaScript(
    "snapshot",
    r"""
local out = {}
for i, k in ipairs(KEYS) do
  local t = redis.call('TYPE', k)['ok']
  local v
  if t == 'hash' then v = redis.call('HGETALL', k)
  elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  elseif t == 'set' then v = redis.call('SMEMBERS', k)
  elseif t == 'string' then v = {redis.call('GET', k)}
  elseif t == 'stream' then v = {tostring(redis.call('XLEN', k))}
  else v = {} end
  out[i] = {t, v}
end
return out
""",
)


# KEYS: the session's keys, then the session registry. ARGV: [1] session tag.
# Reply: how many of the session's keys existed.
DELETE = LuaScript(
    "delete",
    r"""
local n = #KEYS - 1
local removed = 0
for i = 1, n do removed = removed + redis.call('DEL', KEYS[i]) end
redis.call('SREM', KEYS[#KEYS], ARGV[1])
return removed
""",
)


# KEYS: the session's keys. Reply: how many existed.
DELETE_OWN = LuaScript(
    "delete_own",
    r"""
local removed = 0
for i = 1, #KEYS do removed = removed + redis.call('DEL', KEYS[i]) end
return removed
""",
)
