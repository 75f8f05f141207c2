-- Spot unique values claimed by two rows during a `check` (rom._verify, the native
-- verification of a block of rows): the check records in a temporary hash which row it saw
-- first with each unique value; a later row with the same value is a duplicate.
-- KEYS[1]: the temporary hash (kept across calls)
-- ARGV[1]: its time to live in seconds
-- ARGV[2 ..]: slot, id pairs (slot: "<constraint name>\0<value>")
-- Returns: a flat list of pairs: the 1-based position of a pair whose slot was first seen
-- with another id, and that id.
local temp = KEYS[1]
local n = (#ARGV - 1) / 2
local firsts = {}
for first = 1, n, 1000 do
    local last = math.min(first + 999, n)
    local slots = {}
    for i = first, last do
        slots[#slots + 1] = ARGV[2 * i]
    end
    local reply = redis.call('HMGET', temp, unpack(slots))
    for i = first, last do
        firsts[i] = reply[i - first + 1]
    end
end
local claimed, new, out = {}, {}, {}
for i = 1, n do
    local slot, id = ARGV[2 * i], ARGV[2 * i + 1]
    local first = firsts[i] or claimed[slot]
    if not first then
        claimed[slot] = id
        new[#new + 1] = slot
        new[#new + 1] = id
    elseif first ~= id then
        out[#out + 1] = i
        out[#out + 1] = first
    end
end
for first = 1, #new, 1000 do
    redis.call('HSET', temp, unpack(new, first, math.min(first + 999, #new)))
end
if #new > 0 or redis.call('EXISTS', temp) == 1 then
    redis.call('EXPIRE', temp, tonumber(ARGV[1]))
end
return out
