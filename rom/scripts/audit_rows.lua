-- Check the index entries a block of rows calls for (rom._expect.verify_entries, used by
-- `check` and `reindex`). Entries are grouped by index key, so each key costs one command
-- per block (SMISMEMBER / ZMSCORE / GEOPOS / HMGET; one command per member on servers
-- older than Redis 6.2, which lack the first two).
-- KEYS: none (key names are derived from the namespace, like the writer)
-- ARGV[1]: the namespace <ns>
-- ARGV[2]: a temporary hash used to spot unique values held by two rows (kept across calls;
--          '' to skip that check)
-- ARGV[3]: its time to live in seconds
-- ARGV[4]: JSON object of the expected entries, by key suffix after '<ns>:':
--   {"sets": {"<attr>:<token>:idx": [id, ...]},
--    "zsets": {"<name>:idx" | "<attr>:pre" | "<attr>:suf": [[member, score, id], ...]},
--    "geo": {"<name>:geo": [[id, lon, lat], ...]},
--    "uidx": {"<name>:uidx": [[value, id], ...]}}   (each list in row order)
-- Returns: a flat list of problems, 5 items each: code, id, key, member, detail. Codes:
--   'set' (not in the set), 'zmiss' (no such member), 'zscore' (detail: "stored expected"
--   scores), 'geomiss', 'geopos' (detail: "lon lat expected-lon expected-lat"),
--   'umiss' (value not claimed), 'uother' (claimed by another row; detail: its id),
--   'udup' (detail: the other row; every holder of a value but the lowest id is reported
--   once, whatever the order rows come in: the temporary hash keeps the lowest id seen).
local ns = ARGV[1]
local temp = ARGV[2]
local want = cjson.decode(ARGV[4])
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

-- `command key m1 .. mn` for the members of `items` (member at `pos` of each item), in
-- chunks; `single` is the one-member command used when the server lacks `command`.
local function multi(command, single, key, items, pos)
    local out = {}
    local step = 1000
    for first = 1, #items, step do
        local last = math.min(first + step - 1, #items)
        local members = {}
        for i = first, last do
            members[#members + 1] = items[i][pos]
        end
        local reply = redis.pcall(command, key, unpack(members))
        if type(reply) == 'table' and reply.err then
            for i, member in ipairs(members) do
                out[first + i - 1] = redis.call(single, key, member)
            end
        else
            for i = 1, #members do
                out[first + i - 1] = reply[i]
            end
        end
    end
    return out
end

for suffix, ids in pairs(type(want.sets) == 'table' and want.sets or {}) do
    local key = ns .. ':' .. suffix
    local items = {}
    for i, id in ipairs(ids) do
        items[i] = {id}
    end
    local found = multi('SMISMEMBER', 'SISMEMBER', key, items, 1)
    for i, id in ipairs(ids) do
        if found[i] ~= 1 then
            problem('set', id, key, id, '')
        end
    end
end
for suffix, items in pairs(type(want.zsets) == 'table' and want.zsets or {}) do
    local key = ns .. ':' .. suffix
    local scores = multi('ZMSCORE', 'ZSCORE', key, items, 1)
    for i, item in ipairs(items) do
        local stored = scores[i]
        if not stored then
            problem('zmiss', item[3], key, item[1], '')
        elseif not close(stored, item[2]) then
            problem('zscore', item[3], key, item[1], stored .. ' ' .. item[2])
        end
    end
end
for suffix, items in pairs(type(want.geo) == 'table' and want.geo or {}) do
    local key = ns .. ':' .. suffix
    local positions = multi('GEOPOS', 'GEOPOS', key, items, 1)
    for i, item in ipairs(items) do
        local pos = positions[i]
        if type(pos) == 'table' and type(pos[1]) == 'table' then
            pos = pos[1]  -- the one-member fallback returns a list of one position
        end
        if not pos or type(pos) ~= 'table' or not pos[1] then
            problem('geomiss', item[1], key, item[1], '')
        else
            local lon, lat = tonumber(pos[1]), tonumber(pos[2])
            if math.abs(lon - tonumber(item[2])) > 1e-4 or
                    math.abs(lat - tonumber(item[3])) > 1e-4 then
                problem('geopos', item[1], key, item[1],
                        pos[1] .. ' ' .. pos[2] .. ' ' .. item[2] .. ' ' .. item[3])
            end
        end
    end
end
local claimed = {}  -- temporary-hash slot -> lowest id, within this call
-- ids are integer texts: compared by length, then bytes (exact, no Lua number)
local function lower_id(a, b)
    if #a ~= #b then
        return #a < #b
    end
    return a < b
end
for suffix, items in pairs(type(want.uidx) == 'table' and want.uidx or {}) do
    local key = ns .. ':' .. suffix
    local owners = multi('HMGET', 'HGET', key, items, 1)
    local name = string.sub(suffix, 1, -6)
    local slots = {}
    for i, item in ipairs(items) do
        local owner = owners[i]
        if not owner then
            problem('umiss', item[2], key, item[1], '')
        elseif owner ~= item[2] then
            problem('uother', item[2], key, item[1], owner)
        end
        slots[i] = {name .. '\0' .. item[1]}
    end
    if temp ~= '' then
        local firsts = multi('HMGET', 'HGET', temp, slots, 1)
        local new = {}
        for i, item in ipairs(items) do
            local slot = slots[i][1]
            local lowest = claimed[slot] or firsts[i]
            if lowest ~= item[2] then
                if lowest and lower_id(lowest, item[2]) then
                    problem('udup', item[2], key, item[1], lowest)
                else
                    if lowest then
                        problem('udup', lowest, key, item[1], item[2])
                    end
                    claimed[slot] = item[2]
                    new[#new + 1] = slot
                    new[#new + 1] = item[2]
                end
            end
        end
        for first = 1, #new, 1000 do
            redis.call('HSET', temp, unpack(new, first, math.min(first + 999, #new)))
        end
    end
end
if temp ~= '' and redis.call('EXISTS', temp) == 1 then
    redis.call('EXPIRE', temp, tonumber(ARGV[3]))
end
return out
