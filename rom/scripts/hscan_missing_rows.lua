-- Scan one HSCAN page of the legacy hash '<ns>::' and report the ids whose row is gone
-- (rom._maintenance.clean_old_index).
-- KEYS[1]: the legacy hash '<ns>::'
-- ARGV[1]: the HSCAN cursor
-- ARGV[2]: the HSCAN COUNT hint
-- ARGV[3]: the namespace <ns>
-- Returns: {next cursor, {id, ...}} listing the fields (ids) whose row '<ns>:<id>' does not exist.
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local items = page[2]
local missing = {}
for i = 1, #items, 2 do
    local id = items[i]
    if redis.call('EXISTS', ARGV[3] .. ':' .. id) == 0 then
        missing[#missing + 1] = id
    end
end
return {page[1], missing}
