-- One page of an index key: the members that name a row which does not exist
-- (rom._audit, pass 2 of check, for a key holding more members than its rows call for).
-- KEYS[1]: the index key (a set, a sorted set or a unique-index hash)
-- ARGV[1]: the SSCAN/ZSCAN/HSCAN cursor
-- ARGV[2]: the COUNT hint
-- ARGV[3]: the row key prefix '<ns>:'
-- ARGV[4]: how a member names its row: 'id' (the member is the id), 'token' (the member
--          is '<token>\0<id>'), 'value' (hash field -> id value)
-- Returns: {next cursor, members scanned, member, id, member, id, ...} for the members
-- whose row '<ns>:<id>' does not exist (for 'value', the member is the hash field).
local kind = redis.call('TYPE', KEYS[1])
if type(kind) == 'table' then kind = kind['ok'] end
local command = ({set = 'SSCAN', zset = 'ZSCAN', hash = 'HSCAN'})[kind]
if not command then
    return {'0', 0}
end
local page = redis.call(command, KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local items = page[2]
local step = (kind == 'set') and 1 or 2
local how = ARGV[4]
local out = {page[1], 0}
local scanned = 0
for i = 1, #items, step do
    scanned = scanned + 1
    local member = items[i]
    local id = member
    if how == 'value' then
        id = items[i + 1]
    elseif how == 'token' then
        id = string.match(member, '%z([^%z]*)$') or ''
    end
    if redis.call('EXISTS', ARGV[3] .. id) == 0 then
        out[#out + 1] = member
        out[#out + 1] = id
    end
end
out[2] = scanned
return out
