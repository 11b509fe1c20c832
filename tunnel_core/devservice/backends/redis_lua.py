"""Lua scripts of the Redis queue backend; each runs atomically inside Redis.

Keys are built inside the scripts from the prefix and ids (standalone Redis, not Cluster);
see ``tunnel_core.devservice.backends.redis`` for the layout and the reasons.
"""

from __future__ import annotations

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: none (standalone Redis). ARGV: prefix, tunnel, channel, session, request_id, shard, ttl_ms,
# command (json or sealed), is_initialize, mint, terminated session, max_queued, pin_ttl_ms,
# known channels only, max channels
ENQUEUE = _NOW + """
local P, tid, ch, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local base = P..'t:'..tid
local chans = base..':chans'
if ARGV[14] == '1' then
  if ch ~= 'main' then
    local known = redis.call('ZSCORE', chans, ch)
    if not known or tonumber(known) < now then return {'unknown_channel', ''} end
  end
else
  redis.call('ZADD', chans, 'GT', now + tonumber(ARGV[7]), ch)
  local extra = redis.call('ZCARD', chans) - tonumber(ARGV[15])
  if extra > 0 then redis.call('ZPOPMIN', chans, extra) end
end
local lane = base..':q:'..ch
local pinned = ''
if sid ~= '' then
  local pin = base..':pin:'..sid
  local who = redis.call('GET', pin)
  if who then
    if redis.call('EXISTS', base..':alive:'..who) == 0 then return {'session_gone', who} end
    pinned = who
    lane = base..':p:'..who..':'..ch
    redis.call('PEXPIRE', pin, ARGV[13])
  end
end
local maxq = tonumber(ARGV[12])
if maxq > 0 and redis.call('XLEN', lane) >= maxq then return {'queue_full', ''} end
redis.pcall('XGROUP', 'CREATE', lane, 'pollers', '0', 'MKSTREAM')
local id = redis.call('XADD', lane, '*', 'r', ARGV[5], 'c', ARGV[8])
local req = P..'req:'..ARGV[5]
redis.call('HSET', req, 'tid', tid, 'shard', ARGV[6], 'state', 'queued', 'lane', lane, 'id', id,
           'init', ARGV[9], 'mint', ARGV[10], 'term', ARGV[11], 'taker', '', 'aff', '')
redis.call('PEXPIRE', req, ARGV[7])
redis.call('SADD', P..'lanes', lane)
redis.call('PUBLISH', P..'bell:'..tid, ch)
return {'ok', pinned}
"""

# Step 1 of a poll: note the channels the poller named (they become known channels of the tunnel),
# then read up to `limit` new entries into this instance's pending list.
# ARGV: prefix, tunnel, consumer, limit, client, alive_ms, rotation, channel_ttl_ms, max channels,
# number of filter channels, filter channels..., declared channels...
READ = _NOW + """
local P, tid, consumer, left, client = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local base = P..'t:'..tid
if client ~= '' then
  local alive = base..':alive:'..client
  if redis.call('PTTL', alive) < tonumber(ARGV[6]) then redis.call('SET', alive, '1', 'PX', ARGV[6]) end
end
local known = base..':chans'
local nf = tonumber(ARGV[10])
if #ARGV > 10 then
  local expires = now + tonumber(ARGV[8])
  for i = 11, #ARGV do redis.call('ZADD', known, 'GT', expires, ARGV[i]) end
  redis.call('ZREMRANGEBYSCORE', known, '-inf', now)
  local extra = redis.call('ZCARD', known) - tonumber(ARGV[9])
  if extra > 0 then redis.call('ZPOPMIN', known, extra) end
end
local chans = {}
if nf > 0 then
  for i = 11, 10 + nf do chans[#chans + 1] = ARGV[i] end
else
  chans = redis.call('ZRANGEBYSCORE', known, now, '+inf')
  local has_main = false
  for _, c in ipairs(chans) do if c == 'main' then has_main = true end end
  if not has_main then chans[#chans + 1] = 'main' end
  table.sort(chans)
end
local out = {}
local n = #chans
for k = 0, n - 1 do
  local ch = chans[((tonumber(ARGV[7]) + k) % n) + 1]
  local lanes = {base..':q:'..ch}
  if client ~= '' then lanes = {base..':p:'..client..':'..ch, base..':q:'..ch} end
  for _, lane in ipairs(lanes) do
    if left > 0 and redis.call('EXISTS', lane) == 1 then
      local r = redis.pcall('XREADGROUP', 'GROUP', 'pollers', consumer, 'COUNT', left, 'STREAMS', lane, '>')
      if type(r) == 'table' and r[1] then
        for _, e in ipairs(r[1][2]) do
          out[#out + 1] = lane
          out[#out + 1] = e[1]
          out[#out + 1] = e[2][2]
          out[#out + 1] = e[2][4]
          left = left - 1
        end
      end
    end
  end
end
return out
"""

# Step 2: ack and delete what was read; hand out only requests still queued (not expired, withdrawn
# or taken by anyone else). The poll ends now, so the taker counts as alive for the grace only.
# ARGV: prefix, taker, alive_ms, tunnel, then (lane, id, request_id, affinity) quads.
CLAIM = """
local P, taker = ARGV[1], ARGV[2]
if taker ~= '' then redis.call('SET', P..'t:'..ARGV[4]..':alive:'..taker, '1', 'PX', ARGV[3]) end
local claimed = {}
for i = 5, #ARGV, 4 do
  local lane, id, rid = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call('XACK', lane, 'pollers', id)
  redis.call('XDEL', lane, id)
  local req = P..'req:'..rid
  if redis.call('HGET', req, 'state') == 'queued' then
    redis.call('HSET', req, 'state', 'polled', 'taker', taker, 'aff', ARGV[i + 3])
    claimed[#claimed + 1] = rid
  end
end
return claimed
"""

# ARGV: prefix, tunnel, request_id, shard, owner, payload json, terminal, ok, target session,
# pin_ttl_ms, alive_ms
DELIVER = """
local P, tid, rid = ARGV[1], ARGV[2], ARGV[3]
local req = P..'req:'..rid
local h = redis.call('HMGET', req, 'state', 'shard', 'tid', 'taker', 'aff', 'init', 'mint', 'term')
if h[1] ~= 'polled' or h[3] ~= tid then return {'not_found'} end
if h[2] ~= ARGV[4] then return {'mismatch'} end
local base = P..'t:'..tid
local inject = ''
if ARGV[7] == '1' then
  if ARGV[8] == '1' and h[6] == '1' and h[5] == '1' and h[4] ~= '' then
    local sid = ARGV[9]
    if sid == '' then
      sid = h[7]
      inject = sid
    end
    redis.call('SET', base..':pin:'..sid, h[4], 'PX', ARGV[10])
  end
  if h[8] ~= '' then redis.call('DEL', base..':pin:'..h[8]) end
end
if h[4] ~= '' then
  local alive = base..':alive:'..h[4]
  if redis.call('PTTL', alive) < tonumber(ARGV[11]) then redis.call('SET', alive, '1', 'PX', ARGV[11]) end
end
local nl = string.char(10)
local msg = tid..nl..rid..nl..inject..nl..ARGV[6]
if redis.call('PUBLISH', P..'inst:'..ARGV[5], msg) == 0 then
  -- No receiver: the owner instance stopped, or it is re-subscribing after a Redis restart. While
  -- its liveness key lasts, keep the request: the client retries and the answer still arrives.
  if redis.call('EXISTS', P..'up:'..ARGV[5]) == 1 then return {'retry'} end
  redis.call('DEL', req)
  return {'gone'}
end
if ARGV[7] == '1' then redis.call('DEL', req) end
return {'ok'}
"""

# ARGV: prefix, request_id
FORGET = """
local req = ARGV[1]..'req:'..ARGV[2]
local h = redis.call('HMGET', req, 'state', 'lane', 'id')
if h[1] == 'queued' then redis.call('XDEL', h[2], h[3]) end
redis.call('DEL', req)
return 1
"""

# Recovery: entries read by a poll that never claimed them (the instance died, or the poll was
# cut between the two steps) go back to the end of their lane; expired heads are dropped; empty
# lanes of clients that are gone, and shared lanes empty for min_idle_ms, are deleted.
# ARGV: prefix, consumer, min_idle_ms
SWEEP = _NOW + """
local P, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local requeued, dropped = 0, 0
for _, lane in ipairs(redis.call('SMEMBERS', P..'lanes')) do
  if redis.call('EXISTS', lane) == 0 then
    redis.call('SREM', P..'lanes', lane)
  else
    local r = redis.pcall('XAUTOCLAIM', lane, 'pollers', consumer, idle, '0-0', 'COUNT', 100)
    if type(r) == 'table' and r[2] then
      for _, e in ipairs(r[2]) do
        redis.call('XACK', lane, 'pollers', e[1])
        redis.call('XDEL', lane, e[1])
        local f = e[2]
        if f and f[2] then
          local req = P..'req:'..f[2]
          if redis.call('HGET', req, 'state') == 'queued' then
            local nid = redis.call('XADD', lane, '*', 'r', f[2], 'c', f[4])
            redis.call('HSET', req, 'id', nid)
            redis.call('PUBLISH', P..'bell:'..redis.call('HGET', req, 'tid'), '')
            requeued = requeued + 1
          else
            dropped = dropped + 1
          end
        end
      end
    end
    for _, e in ipairs(redis.call('XRANGE', lane, '-', '+', 'COUNT', 100)) do
      if redis.call('EXISTS', P..'req:'..e[2][2]) == 1 then break end
      redis.call('XDEL', lane, e[1])
      dropped = dropped + 1
    end
    local client = string.match(lane, ':p:([^:]+):')
    if redis.call('XLEN', lane) == 0 then
      local gone = false
      if client then
        local tunnel = string.match(lane, 't:(.-):p:')
        gone = redis.call('EXISTS', P..'t:'..tunnel..':alive:'..client) == 0
      else
        local info = redis.call('XINFO', 'STREAM', lane)
        for i = 1, #info, 2 do
          if info[i] == 'last-generated-id' then
            gone = now - (tonumber(string.match(info[i + 1], '^(%d+)')) or 0) > tonumber(idle)
          end
        end
      end
      if gone then
        redis.call('DEL', lane)
        redis.call('SREM', P..'lanes', lane)
      end
    end
  end
end
return {requeued, dropped}
"""

# GCRA rate limit. ARGV: key, ms per request, burst. Returns ms to wait (0 = admitted).
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local step, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', ARGV[1]) or now)
if tat < now then tat = now end
local allow_at = tat + step - burst * step
if now < allow_at then return math.ceil(allow_at - now) end
redis.call('SET', ARGV[1], tat + step, 'PX', math.ceil(tat + step - now) + 1)
return 0
"""
