-- Remove index entries that point at a missing row or that their row no longer calls for
-- (rom._repair, `python -m rom check --fix`). Each removal is checked again here, at the
-- moment it happens, so a row written since the check keeps every entry it owns.
-- KEYS: none (key names are derived from the namespace, like the writer)
-- ARGV[1]: the namespace <ns>
-- ARGV[2 ..]: groups of 6: op, index key, member (or unique field), row id, name, token
--   'gone-set' / 'gone-zset': SREM / ZREM the member when the row <ns>:<id> does not exist
--   'gone-uidx': HDEL the field when it still maps to <id> and that row does not exist
--   'stale-idx-set' / 'stale-idx-zset' (name "attr[:token]"), 'stale-pre' / 'stale-suf'
--     (name: attr, token), 'stale-geo' (name): remove the member when the row is gone or its
--     -index-data- does not list that entry (every save lists what it writes)
--   'stale-uidx': HDEL the field when it still maps to <id> and the row's columns `name`
--     (names joined by ':') still hold the JSON array of texts `token` that the caller read
-- Returns: the number of entries removed.
local ns = ARGV[1]
local removed = 0

local function listed(row, op, name, token)
    local raw = redis.call('HGET', row, '-index-data-')
    if not raw then
        return false
    end
    local ok, data = pcall(cjson.decode, raw)
    if not ok or type(data) ~= 'table' then
        return false
    end
    local slot = ({['stale-idx-set'] = 1, ['stale-idx-zset'] = 2, ['stale-pre'] = 3,
                   ['stale-suf'] = 4, ['stale-geo'] = 5})[op]
    local function has(list, pair)
        if type(list) ~= 'table' then
            return false
        end
        for _, item in ipairs(list) do
            if pair and type(item) == 'table' and item[1] == name and item[2] == token then
                return true
            elseif not pair and item == name then
                return true
            end
        end
        return false
    end
    if slot == 3 or slot == 4 then
        return has(data[slot], true)
    end
    if slot == 5 and has(data[4], false) then
        return true  -- geo name written by rom 1.1.2 into slot 4 (bug G1)
    end
    return has(data[slot], false)
end

local function unchanged(row, names, token)
    local ok, values = pcall(cjson.decode, token)
    if not ok or type(values) ~= 'table' then
        return false
    end
    local i = 0
    for column in string.gmatch(names, '[^:]+') do
        i = i + 1
        local current = redis.call('HGET', row, column)
        local wanted = values[i]
        if wanted == cjson.null then
            wanted = false
        end
        if current ~= wanted then
            return false
        end
    end
    return true
end

for i = 2, #ARGV, 6 do
    local op, key, member, id, name, token = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
        ARGV[i + 4], ARGV[i + 5]
    local row = ns .. ':' .. id
    local exists = redis.call('EXISTS', row) == 1
    if op == 'gone-set' then
        if not exists then
            removed = removed + redis.call('SREM', key, member)
        end
    elseif op == 'gone-zset' then
        if not exists then
            removed = removed + redis.call('ZREM', key, member)
        end
    elseif op == 'gone-uidx' then
        if not exists and redis.call('HGET', key, member) == id then
            removed = removed + redis.call('HDEL', key, member)
        end
    elseif op == 'stale-uidx' then
        if exists and redis.call('HGET', key, member) == id and unchanged(row, name, token) then
            removed = removed + redis.call('HDEL', key, member)
        end
    elseif string.sub(op, 1, 6) == 'stale-' then
        if not exists or not listed(row, op, name, token) then
            if op == 'stale-idx-set' then
                removed = removed + redis.call('SREM', key, member)
            else
                removed = removed + redis.call('ZREM', key, member)
            end
        end
    end
end
return removed
