-- Scan one HSCAN page of a unique index and delete the fields that map to a missing row
-- (rom._maintenance.clean_old_index).
-- KEYS[1]: the unique index '<ns>:<name>:uidx'
-- ARGV[1]: the HSCAN cursor
-- ARGV[2]: the HSCAN COUNT hint
-- ARGV[3]: the namespace <ns>
-- Returns: {next cursor, number of fields deleted}.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local items = page[2]
local removed = 0
for i = 1, #items, 2 do
    local field = items[i]
    local id = items[i + 1]
    if redis.call('EXISTS', ARGV[3] .. ':' .. id) == 0 then
        removed = removed + redis.call('HDEL', KEYS[1], field)
    end
end
return {page[1], removed}
