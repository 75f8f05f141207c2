-- How many entities of a model with `_ttl` have an expiry time that has passed (server
-- clock). Queued before a query's fast path in the same transaction: when it is 0 the fast
-- path's answer holds no expired entity.
-- KEYS[1]: the expiry sorted set <ns>:-expiry-. ARGV: none. Returns an integer. Read-only.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '-inf', string.format('%.0f', now))
