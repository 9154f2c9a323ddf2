"""The Lua script that publishes on Redis: history append and PUBLISH in one atomic step.

KEYS: 1 state hash (ms, n), 2 the topic's stream, 3 the topic's trim mark, 4 the topics zset.
ARGV: 1 channel, 2 history size, 3 history ttl in ms, 4 topic, 5 event count, 6 the event
types (one type for the whole batch, or one per event joined by newlines), 7 the events'
data joined by newlines (each is JSON on one line, never empty).
Returns {ms, n}: the events got ids `ms-(n+1)` ... `ms-(n+count)`.

One PUBLISH carries the whole batch: lines `<id> <type> <data>` joined by newlines (data
is JSON on one line, types and ids have no spaces), so a burst of ingested lines costs
Redis one fan-out and each reading process one message, not one per event.

Ids are `<ms>-<n>`: `ms` never goes backwards (the state hash remembers the
last one) and `n` is one counter for every topic, so ids order events across
topics in the order Redis executed them. Trimming is exact, and the id of the
newest event cut is kept in the trim mark, so a reader can tell whether a
resume point lost events (`reset`) or not.
"""

from __future__ import annotations

#: XADD each event of the batch with ids `ms-(n+1)`...; build `lines` for the PUBLISH.
#: Needs the locals ms (string), n, count, types, blob, one_type. Shared by both scripts.
APPEND_LUA = """
local lines = {}
local find, sub = string.find, string.sub
local d, t = 1, 1
local typ = types
for i = 1, count do
  local id = ms .. '-' .. string.format('%d', n + i)
  local e = find(blob, '\\n', d, true) or (#blob + 1)
  local data = sub(blob, d, e - 1)
  d = e + 1
  if not one_type then
    local te = find(types, '\\n', t, true) or (#types + 1)
    typ = sub(types, t, te - 1)
    t = te + 1
  end
  redis.call('XADD', KEYS[2], id, 't', typ, 'd', data)
  lines[i] = id .. ' ' .. typ .. ' ' .. data
end
"""

#: Exact trimming by count (ARGV[2]) and age (ARGV[3]) of the stream KEYS[2], the newest cut id
#: kept in KEYS[3]; `now` is the script's ms clock. Shared by the single-Redis and cluster scripts.
TRIM_LUA = """
local maxlen = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local len = redis.call('XLEN', KEYS[2])
if len > maxlen then
  local cut = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', len - maxlen)
  redis.call('SET', KEYS[3], cut[#cut][1])
  redis.call('XTRIM', KEYS[2], 'MAXLEN', maxlen)
end
local minid = string.format('%d', now - ttl) .. '-0'
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if first[1] and tonumber(string.match(first[1][1], '^(%d+)')) < now - ttl then
  local old = redis.call('XREVRANGE', KEYS[2], '(' .. minid, '-', 'COUNT', 1)
  if old[1] then redis.call('SET', KEYS[3], old[1][1]) end
  redis.call('XTRIM', KEYS[2], 'MINID', minid)
end
redis.call('PEXPIRE', KEYS[2], ttl)
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
"""

PUBLISH_SCRIPT = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 'ms') or '0')
if last > now then now = last end
local count = tonumber(ARGV[5])
local types, blob = ARGV[6], ARGV[7]
local one_type = not string.find(types, '\\n', 1, true)
local n = redis.call('HINCRBY', KEYS[1], 'n', count) - count
redis.call('HSET', KEYS[1], 'ms', now)
local ms = string.format('%d', now)
"""
    + APPEND_LUA
    + """redis.call('PUBLISH', ARGV[1], table.concat(lines, '\\n'))
"""
    + TRIM_LUA
    + """redis.call('ZADD', KEYS[4], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - ttl)
return {now, n}
"""
)

#: The cluster's script: every key of one topic, in the topic's slot (hash tag `{topic}`).
#: KEYS: 1 the topic's meta hash (ms, n: last id; e: epoch; r: registered), 2 its stream,
#: 3 its trim mark, 4 its shard channel. ARGV as PUBLISH_SCRIPT's but 1 is the topic's slot
#: and 4 is unused. Returns {ms, n, epoch, registered}: the ids are `ms-(n+1)` ...
#: Ids are per topic: `n` packs the microsecond within the ms and the slot, times 1024
#: (see docs/cluster.md), and never goes back within a topic (the last id is in the meta).
CLUSTER_PUBLISH_SCRIPT = (
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = ((tonumber(t[2]) % 1000) * 16384 + tonumber(ARGV[1])) * 1024
local meta = redis.call('HMGET', KEYS[1], 'ms', 'n', 'e', 'r')
local last = tonumber(meta[1] or '0')
if last > now or (last == now and tonumber(meta[2]) >= n) then
  now = last
  n = tonumber(meta[2])
end
local epoch = meta[3] or (t[1] .. string.format('%06d', tonumber(t[2])))
local count = tonumber(ARGV[5])
local types, blob = ARGV[6], ARGV[7]
local one_type = not string.find(types, '\\n', 1, true)
local ms = string.format('%d', now)
"""
    + APPEND_LUA
    + """redis.call('SPUBLISH', KEYS[4], table.concat(lines, '\\n'))
"""
    + TRIM_LUA
    + """redis.call('HSET', KEYS[1], 'ms', ms, 'n', string.format('%d', n + count), 'e', epoch)
redis.call('PEXPIRE', KEYS[1], ttl)
return {now, n, epoch, meta[4] or 0}
"""
)
