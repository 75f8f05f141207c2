-- shard_fence.lua: is a claim's owner row holding the value? If not, fence the claim's token
-- so that the owner's pending write (which checks its token in the same slot) fails.
-- KEYS[1]  the owner shard's unique index '{<base>.<k>}:<attr>:uidx'
-- KEYS[2]  the owner shard's token index '{<base>.<k>}:_rom_claim_token:uidx'
-- ARGV[1]  the value, ARGV[2] the owner id, ARGV[3] the owner's token
-- Returns  1: the row holds the value (the claim is live); 0: fenced (stale, may be taken).
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
    return 1
end
redis.call('HSET', KEYS[2], ARGV[3], 'fenced')
return 0
