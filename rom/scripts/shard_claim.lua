-- shard_claim.lua: claim unique values of a sharded model in one claims hash (one slot).
-- KEYS[1]  the claims hash '{<base>.u<bucket>}:<attr>:claims' (field: value, value: '<id>:<token>')
-- ARGV[1]  the claimer's id, ARGV[2] its token (one save attempt)
-- ARGV[3..] pairs (value, expected owner): expected '' claims a free value (or one this id
--          already holds); otherwise the claim is taken over only while it still reads the
--          expected '<id>:<token>' (a stale claim whose owner row was fenced)
-- Returns  one item per value: '' when claimed, else the current owner ('<id>:<token>').
local key, id, token = KEYS[1], ARGV[1], ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
    local value, expected = ARGV[i], ARGV[i + 1]
    local owner = redis.call('HGET', key, value)
    local mine = owner and string.sub(owner, 1, #id + 1) == id .. ':'
    if (not owner) or mine or (expected ~= '' and owner == expected) then
        redis.call('HSET', key, value, id .. ':' .. token)
        out[#out + 1] = ''
    else
        out[#out + 1] = owner
    end
end
return out
