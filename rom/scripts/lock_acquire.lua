-- Acquire or extend a lock (rom._lock.Lock._acquire).
-- KEYS[1]: the lock key, 'lock:<lockname>'
-- ARGV[1]: lock timeout in whole seconds (the key's TTL)
-- ARGV[2]: the caller's identifier
-- Returns: status 'OK' when the free lock was taken (SETEX), 1 when the caller already held
--          it and its TTL was renewed (EXPIRE), nil when someone else holds it.
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then
    return redis.call('SETEX', key, ARGV[1], ARGV[2])
end
if redis.call('GET', key) == ARGV[2] then
    return redis.call('EXPIRE', key, ARGV[1])
end
return nil
