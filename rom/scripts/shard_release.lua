-- shard_release.lua: drop claims this id holds (values its row no longer holds).
-- KEYS[1]  the claims hash; ARGV[1] the id; ARGV[2..] the values
-- Returns  the number of claims released.
local key, id = KEYS[1], ARGV[1]
local n = 0
for i = 2, #ARGV do
    local owner = redis.call('HGET', key, ARGV[i])
    if owner and string.sub(owner, 1, #id + 1) == id .. ':' then
        redis.call('HDEL', key, ARGV[i])
        n = n + 1
    end
end
return n
