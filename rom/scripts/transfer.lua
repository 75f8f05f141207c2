-- Model.transfer(): atomically move an amount of a numeric column between two rows and mark
-- a transaction row as done.
-- KEYS[1] = source row, KEYS[2] = destination row, KEYS[3] = transaction row
-- ARGV[1] = amount column, ARGV[2] = transaction flag column, ARGV[3] = amount (text),
-- ARGV[4] = decimal places
-- Returns 'done' (already transferred), 'balance' (not enough in the source) or 'ok'.
-- A missing or non-numeric field counts as 0.
local function number(key, field)
    return tonumber(redis.call('HGET', key, field)) or 0
end
local attr = ARGV[1]
local amount = tonumber(ARGV[3]) or 0
local places = tonumber(ARGV[4]) or 0
if number(KEYS[3], ARGV[2]) > 0 then
    return 'done'
end
local source = number(KEYS[1], attr)
if source < amount then
    return 'balance'
end
local dest = number(KEYS[2], attr)
if places > 0 then
    local m = 10 ^ places
    dest = math.floor(dest * m + amount * m) / m
    source = math.floor(source * m - amount * m) / m
else
    dest = dest + amount
    source = source - amount
end
redis.call('HSET', KEYS[1], attr, source)
redis.call('HSET', KEYS[2], attr, dest)
redis.call('HSET', KEYS[3], ARGV[2], 1)
return 'ok'
