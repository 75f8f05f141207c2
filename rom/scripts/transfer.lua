-- Model.transfer(): atomically move an amount of a numeric column between two rows and mark
-- a transaction row as done.
-- KEYS[1] = source row, KEYS[2] = destination row, KEYS[3] = transaction row
-- ARGV[1] = amount column, ARGV[2] = transaction flag column, ARGV[3] = amount (text, > 0,
-- validated by the caller), ARGV[4] = decimal places (0..30), ARGV[5] = column kind: 'int'
-- (ARGV[3] is decimal integer text), 'dec' (plain decimal text) or 'float' (a float's repr)
-- Returns 'done' (already transferred), 'balance' (not enough in the source), 'invalid1' /
-- 'invalid2' (the stored source / destination value is not a number of the column's kind),
-- 'overflow' (a Float result would not be finite) or 'ok'. Nothing is written unless 'ok'.
-- A missing field counts as 0. 'int' and 'dec' amounts are computed exactly on decimal
-- text (never as Lua doubles; at most 4000 digits each, so the work is bounded); 'float'
-- keeps rom 1.1.2's double arithmetic, written as numbers formatted by the server.
local attr, kind = ARGV[1], ARGV[5]
local places = tonumber(ARGV[4]) or 0
local MAX_DIGITS = 4000

local function flag(key, field)
    return tonumber(redis.call('HGET', key, field)) or 0
end

-- exact decimals: {neg = bool, mag = digits without leading zeros ('0' for zero), scale = n}
-- meaning (-1)^neg * mag / 10^scale
local function parse(text, integer)
    if text == false or text == nil then
        return {neg = false, mag = '0', scale = 0}
    end
    if #text > MAX_DIGITS then
        return nil
    end
    local sign, int, frac, exp
    if integer then
        sign, int = string.match(text, '^([-+]?)(%d+)$')
        frac, exp = '', '0'
    else
        local e
        sign, int, frac, e, exp = string.match(text, '^([-+]?)(%d*)%.?(%d*)([eE]?)([-+]?%d*)$')
        if sign and (int .. frac == '' or (e == '') ~= (exp == '') or exp == '-'
                     or exp == '+') then
            return nil
        end
        if exp == '' then
            exp = '0'
        end
    end
    if not sign then
        return nil
    end
    local e = tonumber(exp)
    if e > MAX_DIGITS or e < -MAX_DIGITS then
        return nil
    end
    local mag, scale = int .. frac, #frac - e
    if scale < 0 then
        mag, scale = mag .. string.rep('0', -scale), 0
    end
    mag = string.match(mag, '^0*(%d-)$')
    if mag == '' then
        mag = '0'
    end
    return {neg = sign == '-' and mag ~= '0', mag = mag, scale = scale}
end

-- compare magnitudes (digit strings without leading zeros)
local function cmpmag(a, b)
    if #a ~= #b then
        return #a < #b and -1 or 1
    end
    if a == b then
        return 0
    end
    return a < b and -1 or 1
end

local function addmag(a, b)
    local out, carry = {}, 0
    local i, j = #a, #b
    while i > 0 or j > 0 or carry > 0 do
        local d = carry + (i > 0 and string.byte(a, i) - 48 or 0)
            + (j > 0 and string.byte(b, j) - 48 or 0)
        out[#out + 1] = d % 10
        carry = math.floor(d / 10)
        i, j = i - 1, j - 1
    end
    return string.reverse(table.concat(out))
end

-- a - b for magnitudes with a >= b
local function submag(a, b)
    local out, borrow = {}, 0
    local i, j = #a, #b
    while i > 0 do
        local d = string.byte(a, i) - 48 - borrow - (j > 0 and string.byte(b, j) - 48 or 0)
        if d < 0 then
            d, borrow = d + 10, 1
        else
            borrow = 0
        end
        out[#out + 1] = d
        i, j = i - 1, j - 1
    end
    local r = string.match(string.reverse(table.concat(out)), '^0*(%d-)$')
    return r == '' and '0' or r
end

local function rescale(x, scale)
    if x.scale < scale then
        local mag = x.mag
        if mag ~= '0' then
            mag = mag .. string.rep('0', scale - x.scale)
        end
        return {neg = x.neg, mag = mag, scale = scale}
    end
    return x
end

-- signed a + b (b.neg flipped first when negate)
local function add(a, b, negate)
    local scale = math.max(a.scale, b.scale)
    a, b = rescale(a, scale), rescale(b, scale)
    local bneg = b.neg
    if negate and b.mag ~= '0' then
        bneg = not bneg
    end
    if a.neg == bneg then
        return {neg = a.neg, mag = addmag(a.mag, b.mag), scale = scale}
    end
    local c = cmpmag(a.mag, b.mag)
    if c == 0 then
        return {neg = false, mag = '0', scale = scale}
    elseif c > 0 then
        return {neg = a.neg, mag = submag(a.mag, b.mag), scale = scale}
    end
    return {neg = bneg, mag = submag(b.mag, a.mag), scale = scale}
end

-- x rounded toward -infinity to at most p decimals
local function floor(x, p)
    if x.scale <= p then
        return x
    end
    local cut = x.scale - p
    local mag = x.mag
    if #mag <= cut then
        mag = string.rep('0', cut - #mag + 1) .. mag
    end
    local kept, dropped = string.sub(mag, 1, #mag - cut), string.sub(mag, #mag - cut + 1)
    kept = string.match(kept, '^0*(%d-)$')
    if kept == '' then
        kept = '0'
    end
    if x.neg and string.find(dropped, '[1-9]') then
        kept = addmag(kept, '1')
    end
    return {neg = x.neg and kept ~= '0', mag = kept, scale = p}
end

local function text(x)
    local mag = x.mag
    if x.scale > 0 then
        if #mag <= x.scale then
            mag = string.rep('0', x.scale - #mag + 1) .. mag
        end
        mag = string.sub(mag, 1, #mag - x.scale) .. '.' .. string.sub(mag, #mag - x.scale + 1)
    end
    return (x.neg and '-' or '') .. mag
end

if flag(KEYS[3], ARGV[2]) > 0 then
    return 'done'
end
local new_source, new_dest
if kind == 'float' then
    local function number(key)
        local raw = redis.call('HGET', key, attr)
        if not raw then
            return 0
        end
        local v = tonumber(raw)
        if v == nil or v ~= v or v == math.huge or v == -math.huge then
            return nil
        end
        return v
    end
    local amount = tonumber(ARGV[3])
    local source, dest = number(KEYS[1]), number(KEYS[2])
    if source == nil then
        return 'invalid1'
    elseif dest == nil then
        return 'invalid2'
    end
    if source < amount then
        return 'balance'
    end
    if places > 0 then
        local m = 10 ^ places
        dest = math.floor(dest * m + amount * m) / m
        source = math.floor(source * m - amount * m) / m
    else
        dest = dest + amount
        source = source - amount
    end
    for _, v in ipairs({source, dest}) do
        if v ~= v or v == math.huge or v == -math.huge then
            return 'overflow'
        end
    end
    new_source, new_dest = source, dest
else
    local integer = kind == 'int'
    local amount = parse(ARGV[3], integer)
    local source = parse(redis.call('HGET', KEYS[1], attr), integer)
    local dest = parse(redis.call('HGET', KEYS[2], attr), integer)
    if source == nil then
        return 'invalid1'
    elseif dest == nil then
        return 'invalid2'
    end
    if add(source, amount, true).neg then
        return 'balance'
    end
    source, dest = add(source, amount, true), add(dest, amount, false)
    if not integer and places > 0 then
        source, dest = floor(source, places), floor(dest, places)
    end
    new_source, new_dest = text(source), text(dest)
end
redis.call('HSET', KEYS[1], attr, new_source)
redis.call('HSET', KEYS[2], attr, new_dest)
redis.call('HSET', KEYS[3], ARGV[2], 1)
return 'ok'
