"""The Lua scripts that keep call slots in Redis: each runs atomically, so two instances can
never both admit past a limit.

Keys (``voicebridge:`` first, Redis's own clock for every expiry):

==========================  ======  ==========================================================
``reserved``                zset    CallSid -> expiry (ms): reservations, cluster-wide
``active``                  zset    CallSid -> lease expiry (ms): calls in progress
``instance:<id>``           zset    ``r:<CallSid>`` / ``a:<CallSid>`` -> expiry: one instance's
``owner:<CallSid>``         string  the instance that reserved it (expires with the token)
``token:<nonce>``           string  a used stream token (until it expires)
``call:<CallSid>``          string  the CallSid has opened a call (``CALL_SID_MEMORY_S``)
``outcome:<CallSid>``       string  how the call ended, for the after-stream request
==========================  ======  ==========================================================

A single Redis (or a primary with replicas) is assumed: the scripts name the reserving
instance's key from data, which Redis Cluster would not route.
"""

from __future__ import annotations

__all__ = ["CLAIM", "LEASE", "LOAD", "PREFIX", "RELEASE", "RESERVE"]

PREFIX = "voicebridge:"

# Shared by every script: Redis's time in ms, and expired entries dropped from the sets.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
"""

# KEYS: reserved, active, instance, owner
# ARGV: call_sid, ttl_ms, max_calls, max_total (0: none), instance id, instance key ttl_ms
# Returns: 'ok', 'busy' (this instance) or 'busy_cluster'.
RESERVE = (
    _NOW
    + """
local sid, ttl = ARGV[1], tonumber(ARGV[2])
local expires = now + ttl
local owner = redis.call('GET', KEYS[4])
if owner then
  -- Twilio retried the webhook: the reservation stays where it was made, renewed.
  redis.call('ZADD', KEYS[1], expires, sid)
  redis.call('ZADD', '"""
    + PREFIX
    + """instance:' .. owner, expires, 'r:' .. sid)
  redis.call('PEXPIRE', KEYS[4], ttl)
  return 'ok'
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 'busy' end
local total = tonumber(ARGV[4])
if total > 0 and redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= total then
  return 'busy_cluster'
end
redis.call('ZADD', KEYS[1], expires, sid)
redis.call('ZADD', KEYS[3], expires, 'r:' .. sid)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ttl)
return 'ok'
"""
)

# KEYS: reserved, active, instance, owner, token
# ARGV: call_sid, token_ms, lease_ms, max_calls, max_total, instance key ttl_ms,
#       shared secret ('1' or '0')
# Returns: 'ok', 'reused_token', 'no_reservation' or 'busy'. (A CallSid's one call is the
# ``call:`` key's SET NX, taken after this: server/redis_state.py.)
CLAIM = (
    _NOW
    + """
local sid = ARGV[1]
if redis.call('EXISTS', KEYS[5]) == 1 then return 'reused_token' end
local owner = redis.call('GET', KEYS[4])
if owner then
  -- The slot moves to the instance the stream reached: the reserving one is free at once.
  redis.call('DEL', KEYS[4])
  redis.call('ZREM', KEYS[1], sid)
  redis.call('ZREM', '"""
    + PREFIX
    + """instance:' .. owner, 'r:' .. sid)
elseif ARGV[7] ~= '1' then
  return 'no_reservation'
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 'busy' end
local total = tonumber(ARGV[5])
if not owner and total > 0
    and redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) >= total then
  return 'busy'
end
redis.call('SET', KEYS[5], '1', 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), sid)
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), 'a:' .. sid)
redis.call('PEXPIRE', KEYS[3], ARGV[6])
return 'ok'
"""
)

# KEYS: reserved, active, instance. ARGV: lease_ms, instance key ttl_ms, 'XX' or 'ALL' (renew
# only, or re-add after an outage: the store may have restarted empty), then CallSids.
# Renews the leases of this instance's calls; returns its load.
LEASE = (
    _NOW
    + """
local expires, mode = now + tonumber(ARGV[1]), ARGV[3] == 'XX'
for i = 4, #ARGV do
  if mode then
    redis.call('ZADD', KEYS[2], 'XX', expires, ARGV[i])
    redis.call('ZADD', KEYS[3], 'XX', expires, 'a:' .. ARGV[i])
  else
    redis.call('ZADD', KEYS[2], expires, ARGV[i])
    redis.call('ZADD', KEYS[3], expires, 'a:' .. ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return redis.call('ZCARD', KEYS[3])
"""
)

# KEYS: reserved, active, instance. Returns the instance's reservations plus calls.
LOAD = _NOW + "return redis.call('ZCARD', KEYS[3])\n"

# KEYS: active, instance. ARGV: call_sid.
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], 'a:' .. ARGV[1])
return 1
"""
