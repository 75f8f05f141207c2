-- Expiry helpers shared by write.lua (prepended by rom._scripts.lua through its first line
-- "-- include: _expiry.lua"). They act only on blocks of models that declare `_ttl`, whose
-- flag argument carries an expiry op (see write.lua); other blocks never call them.
-- Storage: sorted set <ns>:-expiry- (member id, score = expiry time in ms since the epoch,
-- by the Redis server's clock) and the row field -expire-at- holding the same integer.
-- TIME is read before a write, which needs effect replication (the default from Redis 5):
-- write.lua calls expiry_effects() first when a call carries expiry ops.
local function expiry_effects()
    if redis.replicate_commands then
        redis.replicate_commands()
    end
end

local expiry_clock = nil
-- The server's time in ms since the epoch (read once per script call).
local function expiry_now()
    if not expiry_clock then
        local t = redis.call('TIME')
        expiry_clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return expiry_clock
end

-- An integer (< 2^53) as decimal text without exponent.
local function expiry_text(ms)
    return string.format('%.0f', ms)
end

-- Whether entity `id` of namespace `ns` has an expiry time that has passed.
local function expiry_due(ns, id)
    local score = redis.call('ZSCORE', ns .. ':-expiry-', id)
    return score ~= false and score ~= nil and tonumber(score) <= expiry_now()
end

-- Before a block is written: nil to go on, or a failure status.
-- 'expired': a save of an entity whose expiry time has passed (it is gone for readers);
-- 'alive': a removal by the expiry sweep ('due') of an entity that is no longer due.
-- A forced save ('!' op prefix) writes over an expired row as over a new one.
local function expiry_check(ns, id, op, is_delete, fresh)
    if fresh then
        return nil
    end
    local due = expiry_due(ns, id)
    if op == 'due' then
        if not due then
            return 'alive'
        end
    elseif due and not is_delete then
        if op:sub(1, 1) ~= '!' then
            return 'expired'
        end
        redis.call('ZREM', ns .. ':-expiry-', id)
        redis.call('HDEL', ns .. ':' .. id, '-expire-at-')
    end
    return nil
end

-- After a block is written: apply its op ('' keep, 'in' ms from now, 'at' ms since the
-- epoch, 'persist' drop the expiry, 'renew' restart a running expiry at ms from now).
local function expiry_apply(ns, id, row, op, ms, is_delete)
    local key = ns .. ':-expiry-'
    if is_delete then
        redis.call('ZREM', key, id)
        return
    end
    if op:sub(1, 1) == '!' then
        op = op:sub(2)
    end
    local at = nil
    if op == 'in' then
        at = expiry_now() + tonumber(ms)
    elseif op == 'at' then
        at = tonumber(ms)
    elseif op == 'renew' then
        if redis.call('ZSCORE', key, id) then
            at = expiry_now() + tonumber(ms)
        end
    elseif op == 'persist' then
        redis.call('ZREM', key, id)
        redis.call('HDEL', row, '-expire-at-')
    end
    if at then
        redis.call('ZADD', key, expiry_text(at), id)
        redis.call('HSET', row, '-expire-at-', expiry_text(at))
    end
end
