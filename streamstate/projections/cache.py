"""The cache view: key layout, per-namespace expiry indexes and the namespace registry.

A cache entry is a plain string key holding ``type:bytes`` (LangGraph serde output),
so a batch read is one ``MGET``. Beside the entries, two sorted sets let ``clear`` find
exactly what to delete without ``KEYS`` or ``SCAN``:

- each namespace has an **index**, scored by expiry in Unix milliseconds
  (``+inf``: never expires), whose members are the namespace's entry keys;
- the cache has a **registry** of namespace indexes, scored by the latest expiry of any
  entry in that namespace.

Both are written in the same script as the entries (atomic), members whose expiry has
passed are pruned on every write, and each sorted set itself expires with its
latest-expiring member, so entries that lapse by TTL leave no registry garbage behind.

Layout under a prefix ``P`` (``langgraph:cache:`` by default)::

    P{ns/<part>/<part>}:e:<key>   an entry (parts and key escaped)
    P{ns/<part>/<part>}:idx       that namespace's index
    Pnamespaces                   the registry

All keys of one namespace share the hash tag ``{ns/...}``, so on a cluster a namespace
lives on one shard. The ``ns`` marker keeps the empty namespace's tag non-empty (an empty
``{}`` is no hash tag at all). Escaping is :func:`streamstate.eventlog.keys.escape`, which
also escapes ``/``, so distinct namespaces and keys never share a key name, and no
brace, colon or glob character of a label reaches a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamstate.errors import ConfigError
from streamstate.eventlog.keys import escape
from streamstate.eventlog.valkey.scripts import LuaScript

DEFAULT_PREFIX = "langgraph:cache:"

Namespace = tuple[str, ...]


def namespace_tag(ns: Namespace) -> str:
    """The hash-tag body of a namespace: ``ns`` then each escaped part after a ``/``."""
    return "/".join(["ns", *(escape(p) for p in ns)])


@dataclass(frozen=True)
class CacheKeys:
    """Names the keys of one cache (one prefix).

    Args:
        prefix: Key prefix; a ``:`` is appended unless it already ends with ``:`` or
            ``/`` (as ``langgraph-checkpoint-aws`` does). Braces are refused because
            they would change the hash tag of every key.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ConfigError(f"prefix must be a non-empty string, got {self.prefix!r}")
        if "{" in self.prefix or "}" in self.prefix:
            raise ConfigError(f"prefix must not contain braces: {self.prefix!r}")
        if not self.prefix.endswith((":", "/")):
            object.__setattr__(self, "prefix", self.prefix + ":")

    @property
    def registry(self) -> str:
        """The sorted set of namespace index keys, scored by their latest expiry."""
        # No brace: it can never equal an entry or index key of any prefix.
        return f"{self.prefix}namespaces"

    def index(self, ns: Namespace) -> str:
        """The sorted set of a namespace's entry keys, scored by expiry (ms)."""
        return f"{self.prefix}{{{namespace_tag(ns)}}}:idx"

    def entry(self, ns: Namespace, key: str) -> str:
        """The string key holding one cached value."""
        return f"{self.prefix}{{{namespace_tag(ns)}}}:e:{escape(key)}"


# Shared by both scripts: drop members whose expiry has passed, then make the sorted set
# expire with its latest member (never, if one never expires). Returns the top score,
# or nil when nothing is left (the set is gone).
_FIT = r"""
local function fit(key, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  if redis.call('ZCOUNT', key, '+inf', '+inf') > 0 then
    redis.call('PERSIST', key)
    return '+inf'
  end
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then return nil end
  redis.call('PEXPIREAT', key, top[2])
  return top[2]
end
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
"""

# KEYS: [1] registry, then per namespace group: its index, then its entry keys.
# ARGV: [1] number of groups, then per group: n entries, then per entry: ms, value
#       (ms > 0: expire after ms; -1: never expire; 0: already expired, delete).
# Reply: 1.
CACHE_SET = LuaScript(
    "cache_set",
    _FIT
    + r"""
local registry = KEYS[1]
local k, a = 2, 2
for _ = 1, tonumber(ARGV[1]) do
  local idx, n = KEYS[k], tonumber(ARGV[a])
  k, a = k + 1, a + 1
  for _ = 1, n do
    local key, ms, value = KEYS[k], tonumber(ARGV[a]), ARGV[a + 1]
    k, a = k + 1, a + 2
    if ms > 0 then
      redis.call('SET', key, value, 'PX', ms)
      redis.call('ZADD', idx, string.format('%d', now + ms), key)
    elseif ms < 0 then
      redis.call('SET', key, value)
      redis.call('ZADD', idx, '+inf', key)
    else
      redis.call('DEL', key)
      redis.call('ZREM', idx, key)
    end
  end
  local top = fit(idx, now)
  if top then
    redis.call('ZADD', registry, top, idx)
  else
    redis.call('ZREM', registry, idx)
  end
end
fit(registry, now)
return 1
""",
)

# KEYS: [1] registry, then the indexes of the namespaces to clear.
# ARGV: [1] 'all' to clear every namespace in the registry (KEYS[2..] unused), else 'some'.
# Reply: how many entry keys were deleted. The registry is pruned and its expiry refit,
# as after a set. Deletion walks each index in chunks so no call gets more than 1000 arguments.
CACHE_CLEAR = LuaScript(
    "cache_clear",
    _FIT
    + r"""
local function drain(key, each)
  local n = 0
  while true do
    local batch = redis.call('ZRANGE', key, 0, 999)
    if #batch == 0 then return n end
    n = n + each(batch)
    redis.call('ZREMRANGEBYRANK', key, 0, #batch - 1)
  end
end
local function unlink(batch) return redis.call('UNLINK', unpack(batch)) end
local function clear_index(idx) return drain(idx, unlink) end

local registry = KEYS[1]
local removed = 0
if ARGV[1] == 'all' then
  removed = drain(registry, function(batch)
    local n = 0
    for _, idx in ipairs(batch) do n = n + clear_index(idx) end
    return n
  end)
else
  for i = 2, #KEYS do
    removed = removed + clear_index(KEYS[i])
    redis.call('ZREM', registry, KEYS[i])
  end
  fit(registry, now)
end
return removed
""",
)


# On a Valkey Cluster a script may touch one hash slot only, and each namespace has its
# own, so a batch becomes one script per namespace plus one registry update each.

# KEYS: [1] the namespace's index, then its entry keys. ARGV: [1] n, then per entry:
# ms, value (as CACHE_SET). Reply: the index's top score after the write, or nil.
CACHE_SET_NAMESPACE = LuaScript(
    "cache_set_namespace",
    _FIT
    + r"""
local idx = KEYS[1]
local a = 2
for k = 2, tonumber(ARGV[1]) + 1 do
  local key, ms, value = KEYS[k], tonumber(ARGV[a]), ARGV[a + 1]
  a = a + 2
  if ms > 0 then
    redis.call('SET', key, value, 'PX', ms)
    redis.call('ZADD', idx, string.format('%d', now + ms), key)
  elseif ms < 0 then
    redis.call('SET', key, value)
    redis.call('ZADD', idx, '+inf', key)
  else
    redis.call('DEL', key)
    redis.call('ZREM', idx, key)
  end
end
return fit(idx, now)
""",
)

# KEYS: [1] a namespace's index. Deletes its entries. Reply: how many were deleted.
CACHE_CLEAR_NAMESPACE = LuaScript(
    "cache_clear_namespace",
    r"""
local n = 0
while true do
  local batch = redis.call('ZRANGE', KEYS[1], 0, 999)
  if #batch == 0 then return n end
  n = n + redis.call('UNLINK', unpack(batch))
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #batch - 1)
end
""",
)

# KEYS: [1] registry. ARGV: [1] an index key, [2] its top score ('' if it is gone).
CACHE_REGISTER = LuaScript(
    "cache_register",
    _FIT
    + r"""
if ARGV[2] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
fit(KEYS[1], now)
return 1
""",
)

SCRIPTS = (CACHE_SET, CACHE_CLEAR, CACHE_SET_NAMESPACE, CACHE_CLEAR_NAMESPACE, CACHE_REGISTER)
"""Every script of the cache view (tests read their inner commands from these)."""
