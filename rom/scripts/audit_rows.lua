-- Check the index entries a block of rows calls for (rom._audit, pass 1 of check).
-- KEYS: none (key names are derived from the namespace, like the writer)
-- ARGV[1]: the namespace <ns>
-- ARGV[2]: a temporary hash used to spot unique values held by two rows (kept across calls;
--          '' to skip that check)
-- ARGV[3]: its time to live in seconds
-- ARGV[4]: JSON array, one item per row:
--   [id, [set entry "attr:token", ...], [[scored name, score], ...],
--    [[attr, token, score], ...] (prefix), [[attr, reversed token, score], ...] (suffix),
--    [[geo name, lon, lat], ...], [[unique index name, value], ...]]
-- Returns: a flat list of problems, 5 items each: code, id, key, member, detail. Codes:
--   'set' (not in the set), 'zmiss' (no such member), 'zscore' (detail: "stored expected"
--   scores), 'geomiss', 'geopos' (detail: "lon lat expected-lon expected-lat"),
--   'umiss' (value not claimed), 'uother' (claimed by another row; detail: its id),
--   'udup' (detail: the id of the row that claimed the value first in this check).
local ns = ARGV[1]
local temp = ARGV[2]
local rows = cjson.decode(ARGV[4])
local out = {}
local function problem(code, id, key, member, detail)
    out[#out + 1] = code
    out[#out + 1] = id
    out[#out + 1] = key
    out[#out + 1] = member
    out[#out + 1] = detail
end
local function close(stored, expected)
    if stored == expected then
        return true
    end
    local a, b = tonumber(stored), tonumber(expected)
    if a == nil or b == nil then
        return false
    end
    if a == b then
        return true
    end
    return math.abs(a - b) <= 1e-12 * math.max(math.abs(a), math.abs(b))
end
local function zcheck(key, member, id, score)
    local stored = redis.call('ZSCORE', key, member)
    if not stored then
        problem('zmiss', id, key, member, '')
    elseif not close(stored, score) then
        problem('zscore', id, key, member, stored .. ' ' .. score)
    end
end
for _, row in ipairs(rows) do
    local id = row[1]
    for _, name in ipairs(row[2]) do
        local key = ns .. ':' .. name .. ':idx'
        if redis.call('SISMEMBER', key, id) == 0 then
            problem('set', id, key, id, '')
        end
    end
    for _, pair in ipairs(row[3]) do
        zcheck(ns .. ':' .. pair[1] .. ':idx', id, id, pair[2])
    end
    for _, item in ipairs(row[4]) do
        zcheck(ns .. ':' .. item[1] .. ':pre', item[2] .. '\0' .. id, id, item[3])
    end
    for _, item in ipairs(row[5]) do
        zcheck(ns .. ':' .. item[1] .. ':suf', item[2] .. '\0' .. id, id, item[3])
    end
    for _, point in ipairs(row[6]) do
        local key = ns .. ':' .. point[1] .. ':geo'
        local pos = redis.call('GEOPOS', key, id)[1]
        if not pos then
            problem('geomiss', id, key, id, '')
        else
            local lon, lat = tonumber(pos[1]), tonumber(pos[2])
            if math.abs(lon - tonumber(point[2])) > 1e-4 or
                    math.abs(lat - tonumber(point[3])) > 1e-4 then
                problem('geopos', id, key, id, pos[1] .. ' ' .. pos[2] .. ' ' .. point[2] .. ' ' .. point[3])
            end
        end
    end
    for _, pair in ipairs(row[7]) do
        local key = ns .. ':' .. pair[1] .. ':uidx'
        local owner = redis.call('HGET', key, pair[2])
        if not owner then
            problem('umiss', id, key, pair[2], '')
        elseif owner ~= id then
            problem('uother', id, key, pair[2], owner)
        end
        local slot = pair[1] .. '\0' .. pair[2]
        if temp ~= '' and redis.call('HSETNX', temp, slot, id) == 0 then
            local first = redis.call('HGET', temp, slot)
            if first ~= id then
                problem('udup', id, key, pair[2], first)
            end
        end
    end
end
if temp ~= '' and redis.call('EXISTS', temp) == 1 then
    redis.call('EXPIRE', temp, tonumber(ARGV[3]))
end
return out
