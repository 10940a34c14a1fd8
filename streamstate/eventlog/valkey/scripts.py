"""Server-side Lua scripts of the Valkey event log.

Scripts are not rolled back when they fail half-way, so the append script validates
everything it can (op codes, key types, idempotency) before it writes anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


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

-- A key's type is proven by a read that runs before any write (a wrong type aborts
-- the script there); every other key an op writes gets a TYPE check. The log needs
-- none: XADD is the first write.
local proven = {}
if idf ~= '' then
  local prev = redis.call('HGET', idem, idf)
  if prev then return {0, prev} end
  proven[2] = 'hash'
end
if gk > 0 then
  if redis.call('HEXISTS', KEYS[gk], gf) == 1 then return {0, ''} end
  proven[gk] = 'hash'
end

local arity = {HSET=2, HSETNX=2, HMAX=2, HDEL=1, ZADD=2, ZREM=1, SADD=1, SREM=1,
               SET=1, DEL=0, PEXPIRE=1}
local want = {HSET='hash', HSETNX='hash', HMAX='hash', HDEL='hash', ZADD='zset',
              ZREM='zset', SADD='set', SREM='set', SET='string'}
local ops, nops = {}, 0
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
  nops = nops + 1
  ops[nops] = {code, k, ARGV[i + 2], ARGV[i + 3]}
  i = i + 2 + a
end

for _, op in ipairs(ops) do
  local code, k = op[1], op[2]
  local need = want[code]
  if code == 'DEL' then proven[k] = 'deleted' end
  if need and proven[k] == nil and k ~= 1 then
    local t = redis.call('TYPE', KEYS[k])['ok']
    if t ~= 'none' and t ~= need then
      return redis.error_reply('WRONGTYPE streamstate: ' .. KEYS[k] .. ' holds a ' .. t ..
        ', expected a ' .. need)
    end
    proven[k] = need
  end
  if code == 'ZADD' and tonumber(op[3]) == nil then
    return redis.error_reply('ERR streamstate: ZADD score is not a number: ' .. op[3])
  end
  if code == 'PEXPIRE' and tonumber(op[3]) == nil then
    return redis.error_reply('ERR streamstate: PEXPIRE ms is not a number: ' .. op[3])
  end
end

if skip_noop then
  local effective = false
  for _, op in ipairs(ops) do
    local c, k = op[1], KEYS[op[2]]
    if c == 'HSETNX' then
      effective = redis.call('HEXISTS', k, op[3]) == 0
    elseif c == 'HSET' then
      effective = body(redis.call('HGET', k, op[3]) or nil) ~= body(op[4])
    elseif c == 'HMAX' then
      local cur = redis.call('HGET', k, op[3])
      effective = (not cur) or cur < op[4]
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
if idf ~= '' then redis.call('HSET', idem, idf, reply[#reply]) end

-- A run of consecutive ops with the same code and key becomes one command (HSETNX:
-- one HMGET, then one HSET of the absent fields, the first of a repeated field
-- winning): the same effect as one command per op, with fewer calls into the server.
local batched = {HSET=true, HSETNX=true, HDEL=true, ZADD=true, ZREM=true, SADD=true, SREM=true}
local function call_chunked(cmd, k, args)
  for s = 1, #args, 4000 do
    redis.call(cmd, k, unpack(args, s, math.min(s + 3999, #args)))
  end
end
local j = 1
while j <= nops do
  local c, ki = ops[j][1], ops[j][2]
  local k = KEYS[ki]
  local e = j + 1
  if batched[c] then
    while e <= nops and ops[e][1] == c and ops[e][2] == ki do e = e + 1 end
  end
  if e - j > 1 then
    local args, width = {}, arity[c]
    for x = j, e - 1 do
      args[#args + 1] = resolve(ops[x][3])
      if width == 2 then args[#args + 1] = resolve(ops[x][4]) end
    end
    if c == 'HSETNX' then
      local names, seen = {}, {}
      for x = 1, #args, 2 do names[#names + 1] = args[x] end
      local present, absent = {}, {}
      for s = 1, #names, 4000 do
        local part = redis.call('HMGET', k, unpack(names, s, math.min(s + 3999, #names)))
        for y = 1, #part do present[s + y - 1] = part[y] end
      end
      for y = 1, #names do
        if not present[y] and not seen[names[y]] then
          seen[names[y]] = true
          absent[#absent + 1] = names[y]
          absent[#absent + 1] = args[2 * y]
        end
      end
      if #absent > 0 then call_chunked('HSET', k, absent) end
    else
      call_chunked(c, k, args)
    end
  else
    local a, b = resolve(ops[j][3]), resolve(ops[j][4])
    if c == 'HSET' then redis.call('HSET', k, a, b)
    elseif c == 'HSETNX' then redis.call('HSETNX', k, a, b)
    elseif c == 'HMAX' then
      local cur = redis.call('HGET', k, a)
      if (not cur) or cur < b then redis.call('HSET', k, a, b) end
    elseif c == 'HDEL' then redis.call('HDEL', k, a)
    elseif c == 'ZADD' then redis.call('ZADD', k, a, b)
    elseif c == 'ZREM' then redis.call('ZREM', k, a)
    elseif c == 'SADD' then redis.call('SADD', k, a)
    elseif c == 'SREM' then redis.call('SREM', k, a)
    elseif c == 'SET' then redis.call('SET', k, a)
    elseif c == 'DEL' then redis.call('DEL', k)
    elseif c == 'PEXPIRE' then redis.call('PEXPIRE', k, a)
    end
  end
  j = e
end
return reply
"""

APPEND = LuaScript("append", "local function pre_write() end\n" + _APPEND_BODY)

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
