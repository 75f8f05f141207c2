-- Release a lock held by the caller (rom._lock.Lock.release).
-- KEYS[1]: the lock key, 'lock:<lockname>'
-- ARGV[1]: the caller's identifier ('' when it has none)
-- Returns: 1 when the key held the identifier and was deleted, nil otherwise.
local key = KEYS[1]
if redis.call('GET', key) == ARGV[1] then
    return redis.call('DEL', key)
end
return nil
