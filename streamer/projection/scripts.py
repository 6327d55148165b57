"""The projection's Lua scripts: each write is atomic and idempotent, and never goes back in time.

A stored value a script reads and cannot (an `as_of` or stream time that is no number, planted by
hand) is taken for absent and overwritten: failing on it refused that key's writes for good. A
key a script builds itself (an owner's set) that holds another type fails the script with an
error naming it (`NAMED_WRONGTYPE` reads it), since the caller, which knows only the declared
keys, could not tell which key it is.
"""

from __future__ import annotations

import re

# The error a script raises for a key it built that holds another type (Redis appends where in
# the script): the type it holds, the type the workers write, the key.
NAMED_WRONGTYPE = re.compile(
    r"WRONGTYPE the key holds an? (\w+) where the workers write an? (\w+): (.*?)"
    r"(?: script: \w+, on @user_script:\d+\.)?",
    re.DOTALL,
)

# KEYS: account hash, summaries hash, by:<index> for each index in keys.INDEXES order, by:risk,
#       then band:<band>:<index> for each band in keys.BANDS order (indexes in INDEXES order),
#       then the owners and segments hashes (name -> number of accounts: the size of its set,
#       set anew at each change, so that it never drifts from the set: counted up and down, it
#       grew again whenever an account's hash was deleted or evicted).
# ARGV: account id, as_of ms, snapshot JSON, summary JSON, band number (1-based, BANDS order),
#       number of bands, number of indexes, MRR at risk ('' when not at risk), owner ('' when
#       none), segment ('' when none), prefix of the per-owner account sets, prefix of the
#       per-segment account sets, '1' when the snapshot was re-derived by a recovery (else ''),
#       the writer's keys.LAYOUT, then each index's value in INDEXES order ('' when the account
#       has none: it leaves that index).
# Returns 1 when written, 0 when the stored snapshot is newer, or as new, written in this layout,
# and this one re-derived (a recovery evaluates an account again at its last scoring instant, on
# state that may hold usage folded in since: it must not replace what was published then; after
# an upgrade that changed the layout it does, so that a new index fills at once).
SNAPSHOT = """
local id = ARGV[1]
local stored = tonumber(redis.call('HGET', KEYS[1], 'as_of'))  -- nil: absent or unreadable
local at = tonumber(ARGV[2])
if stored then
  if stored > at then return 0 end
  if stored == at and ARGV[13] == '1' and redis.call('HGET', KEYS[1], 'layout') == ARGV[14] then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'as_of', ARGV[2], 'snapshot', ARGV[3], 'layout', ARGV[14])
redis.call('HSET', KEYS[2], id, ARGV[4])
local band, bands, indexes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local function put(key, value)
  if value == '' then
    redis.call('ZREM', key, id)
  else
    redis.call('ZADD', key, value, id)
  end
end
for i = 1, indexes do
  put(KEYS[2 + i], ARGV[14 + i])
end
put(KEYS[3 + indexes], ARGV[8])
for b = 1, bands do
  local base = 3 + indexes + (b - 1) * indexes
  for i = 1, indexes do
    if b == band then put(KEYS[base + i], ARGV[14 + i]) else redis.call('ZREM', KEYS[base + i], id) end
  end
end
local function a_set(key)
  local held = redis.call('TYPE', key).ok
  if held ~= 'set' and held ~= 'none' then
    error({err = 'WRONGTYPE the key holds a ' .. held .. ' where the workers write a set: ' .. key})
  end
  return key
end
local function recount(counts, name, key)
  local size = redis.call('SCARD', key)
  if size > 0 then redis.call('HSET', counts, name, size) else redis.call('HDEL', counts, name) end
end
local function member(field, value, prefix, counts)
  local before = redis.call('HGET', KEYS[1], field) or ''
  if before == value then return end
  if before ~= '' then
    local key = a_set(prefix .. before)
    redis.call('SREM', key, id)
    recount(counts, before, key)
  end
  if value ~= '' then
    local key = a_set(prefix .. value)
    redis.call('SADD', key, id)
    recount(counts, value, key)
    redis.call('HSET', KEYS[1], field, value)
  else
    redis.call('HDEL', KEYS[1], field)
  end
end
local extra = 3 + indexes * (bands + 1)
member('owner', ARGV[9], ARGV[11], KEYS[extra + 1])
member('segment', ARGV[10], ARGV[12], KEYS[extra + 2])
return 1
"""

# KEYS: partition hash, partitions set.
# ARGV: partition number, stream time, sums JSON, totals JSON.
# Returns 1 when written, 0 when the stored stream time is newer.
PARTITION = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'stream_time'))  -- nil: absent or unreadable
if stored and stored > tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'stream_time', ARGV[2], 'sums', ARGV[3], 'totals', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""

# KEYS: alert data hash, alert owner hash, recent alerts zset, the account's alerts zset.
# ARGV: alert id, raised_at ms, alert JSON, account id, alerts kept overall, alerts kept per
#       account, prefix of the per-account alert sets.
# An alert's JSON is dropped once it is in neither the overall nor its account's recent set
# (a set of another type holds none).
ALERT = """
local data, owners, recent, mine = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, at = ARGV[1], ARGV[2]
redis.call('HSET', data, id, ARGV[3])
redis.call('HSET', owners, id, ARGV[4])
redis.call('ZADD', recent, at, id)
redis.call('ZADD', mine, at, id)
local function forget(gone, other)
  -- another type at `other` (an account's set, planted by hand) holds no alert of it
  if redis.call('TYPE', other).ok ~= 'zset' or not redis.call('ZSCORE', other, gone) then
    redis.call('HDEL', data, gone)
    redis.call('HDEL', owners, gone)
  end
end
local keep_all, keep_mine = tonumber(ARGV[5]), tonumber(ARGV[6])
for _, gone in ipairs(redis.call('ZRANGE', mine, 0, -keep_mine - 1)) do
  redis.call('ZREM', mine, gone)
  forget(gone, recent)
end
for _, gone in ipairs(redis.call('ZRANGE', recent, 0, -keep_all - 1)) do
  redis.call('ZREM', recent, gone)
  local owner = redis.call('HGET', owners, gone)
  if owner then forget(gone, ARGV[7] .. owner) else redis.call('HDEL', data, gone) end
end
return 1
"""

# KEYS: the account's history sorted set (score = as_of ms, member = the point JSON).
# ARGV: as_of ms, the point (see history.py), fine window ms, kept window ms, '1' when the point
# was re-derived by a recovery (it then leaves a bucket holding a point of its instant as it is).
# The point replaces any point of its bucket (an hour within the fine window of the newest point,
# else a UTC day) unless that bucket holds a later one; the same snapshot again writes the same
# member at the same score, so a re-delivery changes nothing. When the newest point moves on,
# the days that left the fine window since the previous newest point keep only their last point
# (however far it moved), and points older than the kept window are dropped.
# Returns 1 when written, 0 when the bucket holds a later point.
HISTORY = """
local key, at, point = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local fine, keep = tonumber(ARGV[3]), tonumber(ARGV[4])
local HOUR, DAY = 3600000, 86400000
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
local newest = at
if last[2] and tonumber(last[2]) > at then newest = tonumber(last[2]) end
local size = HOUR
if at < newest - fine then size = DAY end
local lo = at - at % size
local hi = lo + size
local same = redis.call('ZRANGEBYSCORE', key, lo, '(' .. hi, 'WITHSCORES')
local restaged = ARGV[5] == '1'
for i = 2, #same, 2 do
  local s = tonumber(same[i])
  if s > at or (restaged and s == at) then return 0 end
end
redis.call('ZREMRANGEBYSCORE', key, lo, '(' .. hi)
redis.call('ZADD', key, at, point)
local previous = last[2] and tonumber(last[2])
if previous and newest == at and at > previous then
  local edge = newest - fine
  local from = previous - fine
  from = from - from % DAY
  local coarse = redis.call('ZRANGEBYSCORE', key, from, '(' .. edge, 'WITHSCORES')
  local last_of_day = {}
  for i = 2, #coarse, 2 do
    local s = tonumber(coarse[i])
    local d = s - s % DAY
    local prev = last_of_day[d]
    if prev then redis.call('ZREM', key, prev) end
    last_of_day[d] = coarse[i - 1]
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (newest - keep))
end
return 1
"""


def declared_types(script: str, keys: list[str]) -> dict[str, str]:
    """The type (as Redis's TYPE names it) the workers write at each key a script declares (its
    KEYS, in the order documented above): what a refused write is checked against."""
    if script == "snapshot":  # the account and summaries hashes, the indexes, the count hashes
        kinds = ["hash", "hash", *["zset"] * (len(keys) - 4), "hash", "hash"]
    else:
        kinds = {"partition": ["hash", "set"], "alert": ["hash", "hash", "zset", "zset"]}.get(
            script, ["zset"]
        )
    return dict(zip(keys, kinds, strict=False))
