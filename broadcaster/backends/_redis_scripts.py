"""The Lua scripts of the Redis backend: a publish (history append and PUBLISH in one atomic step)
and an epoch change. Every key a script touches belongs to one topic (one hash tag), except the
topics registry: nothing counts across topics (Redis Cluster, issue 17, keeps the same keys).

PUBLISH_SCRIPT
KEYS: 1 the topic's stream, 2 the topic's meta hash (`e` epoch, `n` last seq, `ms` last
publish time), 3 the topics registry (a zset scored by last publish time).
ARGV: 1 channel, 2 history size, 3 history ttl in ms, 4 topic, 5 event count, 6 the event
types (one type for the whole batch, or one per event joined by newlines), 7 the events'
data joined by newlines (each is JSON on one line, never empty), 8 the meta hash's ttl in ms,
9 and 10 the newest epoch and seq of the topic this process has seen (empty and 0 if none):
if the history is still in that epoch but its last seq is lower, it went backwards and a new
epoch starts instead of issuing those seqs again.
Returns {epoch, n, ms}: the events got seqs n+1 ... n+count, all with time `ms`.

Stream entry ids are `<seq>-<ms>`: ordered by seq (no gap within an epoch), and each carries
its publish time, which trimming by age reads without touching the fields. A topic whose
meta hash is missing (never published, or Redis lost it: restarted empty, flushed, a new
instance) starts a new epoch: 8 hex digits of a hash of Redis's clock in microseconds and
the topic. The meta hash outlives the retained events (its own, longer ttl), so a resume
point newer than anything published in the epoch is recognised even on an idle topic.

CLUSTER_PUBLISH_SCRIPT (the cluster backend) is the same with no key outside the topic's slot:
KEYS 3 is the topic's shard channel, which it `SPUBLISH`es to, and there is no registry
write (the backend registers a topic once, see `cluster.py`). It returns {epoch, n, ms, r},
`r` the time the topic was last registered (0: never, in this epoch).

One PUBLISH carries the whole batch: a head line `<epoch> <first seq> <ms>`, then one line
`<type> <data>` per event (data is JSON on one line, types have no spaces), so a burst of
ingested lines costs Redis one fan-out and each reading process one message.
"""

from __future__ import annotations

#: Read the topic's epoch and seq (a new epoch if its meta hash is gone), XADD the batch, build the message.
_APPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local meta = redis.call('HMGET', KEYS[2], 'e', 'n', 'ms', 'r')
local epoch = meta[1]
local n = tonumber(meta[2] or '0')
local last = tonumber(meta[3] or '0')
if epoch and epoch == ARGV[9] and n < tonumber(ARGV[10]) then
  -- This history went backwards (a failover to a replica that lagged, an old snapshot):
  -- its seqs would be issued twice. A new epoch; the entries of the old one go.
  redis.call('DEL', KEYS[1])
  epoch = nil
end
if not epoch then
  epoch = string.sub(redis.sha1hex(t[1] .. '.' .. t[2] .. '.' .. ARGV[4]), 1, 8)
  n = 0
end
if last > now then now = last end
local count = tonumber(ARGV[5])
local types, blob = ARGV[6], ARGV[7]
local one_type = not string.find(types, '\\n', 1, true)
local ms = string.format('%d', now)
local lines = {}
local find, sub = string.find, string.sub
local d, p = 1, 1
local typ = types
for i = 1, count do
  local e = find(blob, '\\n', d, true) or (#blob + 1)
  local data = sub(blob, d, e - 1)
  d = e + 1
  if not one_type then
    local te = find(types, '\\n', p, true) or (#types + 1)
    typ = sub(types, p, te - 1)
    p = te + 1
  end
  redis.call('XADD', KEYS[1], string.format('%d', n + i) .. '-' .. ms, 't', typ, 'd', data)
  lines[i] = typ .. ' ' .. data
end
local head = epoch .. ' ' .. string.format('%d', n + 1) .. ' ' .. ms
"""

#: Store the new last seq, then trim the stream by count (ARGV[2]) and by age (ARGV[3]).
_TRIM = """redis.call('HSET', KEYS[2], 'e', epoch, 'n', n + count, 'ms', now)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[8]))
redis.call('XTRIM', KEYS[1], 'MAXLEN', tonumber(ARGV[2]))
local horizon = now - tonumber(ARGV[3])
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
local expired = first and tonumber(string.match(first[1], '-(%d+)$')) < horizon
while expired do
  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 64)
  local keep = nil
  for _, entry in ipairs(head) do
    local seq, at = string.match(entry[1], '^(%d+)-(%d+)$')
    if tonumber(at) >= horizon then keep = seq break end
  end
  if keep then
    redis.call('XTRIM', KEYS[1], 'MINID', keep)
    break
  end
  if #head < 64 then
    redis.call('DEL', KEYS[1])
    break
  end
  local seq = string.match(head[#head][1], '^(%d+)-')
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', tonumber(seq) + 1))
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3])) end
"""

PUBLISH_SCRIPT = (
    _APPEND
    + """redis.call('PUBLISH', ARGV[1], head .. '\\n' .. table.concat(lines, '\\n'))
"""
    + _TRIM
    + """redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', horizon)
return {epoch, n, now}
"""
)

CLUSTER_PUBLISH_SCRIPT = (
    _APPEND
    + """redis.call('SPUBLISH', KEYS[3], head .. '\\n' .. table.concat(lines, '\\n'))
"""
    + _TRIM
    + """return {epoch, n, now, meta[4] or 0}
"""
)


#: KEYS: 1 the topic's meta hash, 2 its stream. ARGV: 1 the epoch to replace.
#: A new epoch starts at the next publish (the meta hash is gone); the stream of the old one goes too.
NEW_EPOCH_SCRIPT = """
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"""
