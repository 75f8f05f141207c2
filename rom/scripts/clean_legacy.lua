-- Remove the index entries listed in legacy '<ns>::' bookkeeping for rows that are gone,
-- then drop the bookkeeping field (rom._maintenance.clean_old_index).
-- KEYS: none (rom passes key names as arguments, like the writer)
-- ARGV[1]: the namespace <ns>
-- ARGV[2..n]: ids whose row '<ns>:<id>' no longer exists
-- Returns: the number of ids that had a legacy field and were cleaned.
-- Slots of the JSON array: 1 set keys "<attr>:<token>", 2 zset keys "<attr>[:<k>]",
-- 3 prefix pairs [attr, value], 4 suffix pairs [attr, reversed] plus bare geo index names
-- (written by rom 0.37-0.42 and 1.1.2), 5 geo index names.
local ns = ARGV[1]
local legacy = ns .. '::'
local cleaned = 0
for i = 2, #ARGV do
    local id = ARGV[i]
    local raw = redis.call('HGET', legacy, id)
    if raw then
        local ok, data = pcall(cjson.decode, raw)
        if ok and type(data) == 'table' then
            local keys = data[1] or {}
            local scored = data[2] or {}
            local prefix = data[3] or {}
            local suffix = data[4] or {}
            local geo = data[5] or {}
            for _, key in ipairs(keys) do
                if type(key) == 'string' then
                    redis.call('SREM', ns .. ':' .. key .. ':idx', id)
                end
            end
            for _, key in ipairs(scored) do
                if type(key) == 'string' then
                    redis.call('ZREM', ns .. ':' .. key .. ':idx', id)
                end
            end
            for _, pair in ipairs(prefix) do
                if type(pair) == 'table' and #pair == 2 then
                    redis.call('ZREM', ns .. ':' .. pair[1] .. ':pre', pair[2] .. '\0' .. id)
                end
            end
            for _, item in ipairs(suffix) do
                if type(item) == 'table' and #item == 2 then
                    redis.call('ZREM', ns .. ':' .. item[1] .. ':suf', item[2] .. '\0' .. id)
                elseif type(item) == 'string' then
                    redis.call('ZREM', ns .. ':' .. item .. ':geo', id)
                end
            end
            for _, name in ipairs(geo) do
                if type(name) == 'string' then
                    redis.call('ZREM', ns .. ':' .. name .. ':geo', id)
                end
            end
        end
        redis.call('HDEL', legacy, id)
        cleaned = cleaned + 1
    end
end
return cleaned
