-- include: _expiry.lua
-- rom's atomic writer: saves or deletes a batch of entities, in order, one at a time.
-- KEYS: none (every key name is derived from the namespace and id, like rom 1.1.2).
-- ARGV[1]: number of entity blocks (negated when a block carries an expiry op); then per
-- entity:
--   ns, id ('' = allocate it with INCR <ns>:<pk>: and write the pk field), pk field name,
--   is_delete ('1' | '0'), fresh ('1' for a new entity: skip reading old bookkeeping),
--   [models with `_ttl` only: is_delete is '1e' | '0e' and fresh is followed by the expiry
--   op and its ms argument, see _expiry.lua]
--   n_race,    n x (field, expected stored value)       -- data-race check (updates only)
--   n_absent,  n x field                                 -- fields that must still be absent
--   n_claim,   n x (unique index name, value)            -- unique values to claim
--     (deletes: race/absent list the unique-related fields as last read and claims name
--     every unique index with an empty value; nothing is claimed and a delete never fails:
--     when a listed field changed since, every field of those unique indexes that maps to
--     this id is released, so a concurrent change of a unique value cannot leave it behind)
--   n_release, n x (unique index name, value)            -- unique values to release
--   n_hdel,    n x field                                 -- row fields to delete
--   n_hset,    n x (field, value)                        -- row fields to write
--   n_unsafe,  n x key                                   -- UnsafeColumn keys (deletes)
--   n_keys,    n x "attr:token"                          -- SET index entries
--   n_scores,  n x ("attr" | "attr:key", score)          -- ZSET index entries
--   n_prefix,  n x (attr, token, score)                  -- <ns>:<attr>:pre members
--   n_suffix,  n x (attr, reversed token, score)         -- <ns>:<attr>:suf members
--   n_geo,     n x (geo index name, lon, lat)            -- <ns>:<name>:geo members
-- Returns {applied, status, n, detail x n, id x applied[, id of the failed block]}: `applied`
-- blocks were written (the ids allocated for them follow, '' where none was allocated, and
-- on failure the failed block's allocated id); status is 'ok', or on the first
-- failure (nothing of that block is written, later blocks are not attempted) 'race' with the
-- changed fields as details, or 'unique' with the unique index name.
-- Every input the server could reject (scores, coordinates) was validated by the caller.

local pos = 2
local function arg()
    local v = ARGV[pos]
    pos = pos + 1
    return v
end
local function count()
    return tonumber(arg())
end

local function call_chunked(cmd, key, items)
    local step = 1000
    for i = 1, #items, step do
        local last = math.min(i + step - 1, #items)
        redis.call(cmd, key, unpack(items, i, last))
    end
end

-- Remove the index entries listed in the old bookkeeping (legacy '<ns>::' hash first)
-- that this save does not write again: entries it re-adds (same set token, same scored or
-- geo index, same prefix/suffix token) are left in place and overwritten by the adds.
-- `new` = {set = {name = true}, scored = {...}, pre = {attr\0token = true}, suf = ..., geo = ...}.
-- Returns the row's own '-index-data-' text when that was the source (else nil).
local function remove_old_entries(ns, id, row, new)
    local raw = redis.call('HGET', ns .. '::', id)
    local from_row = nil
    if not raw then
        raw = redis.call('HGET', row, '-index-data-')
        from_row = raw
    end
    if not raw then
        return nil
    end
    local ok, data = pcall(cjson.decode, raw)
    if not ok or type(data) ~= 'table' then
        return from_row
    end
    local function list(i)
        local v = data[i]
        if type(v) == 'table' then
            return v
        end
        return {}
    end
    for _, name in ipairs(list(1)) do
        if not new.set[name] then
            redis.call('SREM', ns .. ':' .. name .. ':idx', id)
        end
    end
    for _, name in ipairs(list(2)) do
        if not new.scored[name] then
            redis.call('ZREM', ns .. ':' .. name .. ':idx', id)
        end
    end
    for _, pair in ipairs(list(3)) do
        if type(pair) == 'table' and #pair == 2 and not new.pre[pair[1] .. '\0' .. pair[2]] then
            redis.call('ZREM', ns .. ':' .. pair[1] .. ':pre', pair[2] .. '\0' .. id)
        end
    end
    for _, pair in ipairs(list(4)) do
        if type(pair) == 'table' and #pair == 2 then
            if not new.suf[pair[1] .. '\0' .. pair[2]] then
                redis.call('ZREM', ns .. ':' .. pair[1] .. ':suf', pair[2] .. '\0' .. id)
            end
        elseif type(pair) == 'string' and not new.geo[pair] then
            -- geo index name written by rom 1.1.2 into the wrong slot (bug G1)
            redis.call('ZREM', ns .. ':' .. pair .. ':geo', id)
        end
    end
    for _, name in ipairs(list(5)) do
        if type(name) == 'string' and not new.geo[name] then
            redis.call('ZREM', ns .. ':' .. name .. ':geo', id)
        end
    end
    return from_row
end

-- The composite unique field of the given stored values (rom.util._encode_unique_constraint
-- then the latin-1 -> UTF-8 transport of the writer).
local function composite_field(values)
    local parts = {}
    for i, v in ipairs(values) do
        parts[i] = '\0\0' .. v
    end
    local raw = table.concat(parts, '\0')
    return (raw:gsub('[\128-\255]', function(c)
        local b = c:byte()
        return string.char(0xC0 + math.floor(b / 64), 0x80 + b % 64)
    end))
end

-- Delete of a stale handle: release the unique fields of the row's current values.
local function release_current(ns, id, row, name, kind)
    local key = ns .. ':' .. name .. ':uidx'
    if kind == 's' then
        local value = redis.call('HGET', row, name)
        if value and redis.call('HGET', key, value) == id then
            redis.call('HDEL', key, value)
        end
    elseif kind == 'c' then
        local values = {}
        for column in string.gmatch(name, '[^:]+') do
            local value = redis.call('HGET', row, column)
            if not value then
                return
            end
            values[#values + 1] = value
        end
        local field = composite_field(values)
        if redis.call('HGET', key, field) == id then
            redis.call('HDEL', key, field)
        end
    else
        -- keygen-derived values cannot be computed here: look for fields naming this id
        local all = redis.call('HGETALL', key)
        for i = 1, #all, 2 do
            if all[i + 1] == id then
                redis.call('HDEL', key, all[i])
            end
        end
    end
end

-- HMGET of any number of fields (in chunks, like call_chunked).
local function hmget_chunked(key, fields)
    local out = {}
    local step = 1000
    for i = 1, #fields, step do
        local got = redis.call('HMGET', key, unpack(fields, i, math.min(i + step - 1, #fields)))
        for j = 1, #got do
            out[#out + 1] = got[j]
        end
    end
    return out
end

local blocks = tonumber(ARGV[1])
if blocks < 0 then  -- some blocks carry expiry ops (models with `_ttl`): see _expiry.lua
    blocks = -blocks
    expiry_effects()
end
local allocated = {}
local function result(applied, status, details)
    local out = {applied, status, #details}
    for _, d in ipairs(details) do
        out[#out + 1] = d
    end
    for i = 1, applied do
        out[#out + 1] = allocated[i]
    end
    if status ~= 'ok' then
        out[#out + 1] = allocated[applied + 1] or ''
    end
    return out
end

for block = 1, blocks do
    local ns = arg()
    local id = arg()
    local pk_field = arg()
    local flag = arg()
    local is_delete = flag:sub(1, 1) == '1'
    local fresh = arg() == '1'  -- a new entity: no old row, bookkeeping or legacy entry
    -- expiry: models with `_ttl` only ------------------------------------------------------
    local ttl_op, ttl_ms = nil, nil
    if #flag > 1 then
        ttl_op, ttl_ms = arg(), arg()
    end
    -- ---------------------------------------------------------------------------------------
    local new_id = ''
    if id == '' then
        -- (a failed save keeps this id, as rom 1.1.2 consumed it when the entity was created)
        id = tostring(redis.call('INCR', ns .. ':' .. pk_field .. ':'))
        new_id = id
    end
    allocated[block] = new_id
    local row = ns .. ':' .. id
    -- expiry: models with `_ttl` only ------------------------------------------------------
    if ttl_op then
        local status = expiry_check(ns, id, ttl_op, is_delete, fresh)
        if status then
            return result(block - 1, status, {})
        end
    end
    -- ---------------------------------------------------------------------------------------

    -- race check: every listed field must still hold the value read (or still be absent)
    local checked, expected = {}, {}
    for i = 1, count() do
        checked[i] = arg()
        expected[i] = arg()
    end
    for _ = 1, count() do
        checked[#checked + 1] = arg()
        expected[#checked] = false
    end
    local changed = {}
    if #checked > 0 then
        local current = hmget_chunked(row, checked)
        for i, field in ipairs(checked) do
            if current[i] ~= expected[i] then
                changed[#changed + 1] = field
            end
        end
    end
    if #changed > 0 and not is_delete then
        return result(block - 1, 'race', changed)
    end

    local claims = {}
    for i = 1, count() do
        local name = arg()
        local value = arg()
        if is_delete then
            claims[i] = {name, value}  -- value: 's' single, 'c' composite, 'k' keygen-derived
        else
            local owner = redis.call('HGET', ns .. ':' .. name .. ':uidx', value)
            -- (models with `_ttl`: an expired owner's claim is taken over; its removal
            -- later releases only the fields that still map to it)
            if owner and owner ~= id and not (ttl_op and expiry_due(ns, owner)) then
                return result(block - 1, 'unique', {name})
            end
            claims[i] = {name, value, owner == id}
        end
    end
    if is_delete then
        if #changed > 0 then
            -- the unique values changed since they were read: release the current ones
            for _, claim in ipairs(claims) do
                release_current(ns, id, row, claim[1], claim[2])
            end
        end
    else
        for _, claim in ipairs(claims) do
            if not claim[3] then  -- not already this entity's
                redis.call('HSET', ns .. ':' .. claim[1] .. ':uidx', claim[2], id)
            end
        end
    end

    for _ = 1, count() do
        local key = ns .. ':' .. arg() .. ':uidx'
        local value = arg()
        if redis.call('HGET', key, value) == id then
            redis.call('HDEL', key, value)
        end
    end

    local fields = {}
    for i = 1, count() do
        fields[i] = arg()
    end
    if #fields > 0 then
        call_chunked('HDEL', row, fields)
    end
    local pairs_ = {}
    for _ = 1, count() do
        pairs_[#pairs_ + 1] = arg()
        pairs_[#pairs_ + 1] = arg()
    end
    if new_id ~= '' then
        pairs_[#pairs_ + 1] = pk_field
        pairs_[#pairs_ + 1] = new_id
    end
    if #pairs_ > 0 and not (fresh and not is_delete) then
        call_chunked('HMSET', row, pairs_)
    end
    local unsafe = {}
    for i = 1, count() do
        unsafe[i] = arg()
    end

    -- the entries this save writes (and records in the bookkeeping)
    local keys, scored, prefix, suffix, geo = {}, {}, {}, {}, {}
    local new = {set = {}, scored = {}, pre = {}, suf = {}, geo = {}}
    for i = 1, count() do
        keys[i] = arg()
        new.set[keys[i]] = true
    end
    local scores = {}
    for i = 1, count() do
        scored[i] = arg()
        scores[i] = arg()
        new.scored[scored[i]] = true
    end
    local members = {pre = {}, suf = {}}
    for _, kind in ipairs({'pre', 'suf'}) do
        local recorded = kind == 'pre' and prefix or suffix
        for i = 1, count() do
            local attr, token, score = arg(), arg(), arg()
            recorded[i] = {attr, token}
            members[kind][i] = score
            new[kind][attr .. '\0' .. token] = true
        end
    end
    local points = {}
    for i = 1, count() do
        local name, lon, lat = arg(), arg(), arg()
        points[i] = {name, lon, lat}
        if not new.geo[name] then
            new.geo[name] = true
            geo[#geo + 1] = name
        end
    end

    local old_index_data = nil
    if not fresh then
        old_index_data = remove_old_entries(ns, id, row, new)
    end

    for _, name in ipairs(keys) do
        redis.call('SADD', ns .. ':' .. name .. ':idx', id)
    end
    for i, name in ipairs(scored) do
        redis.call('ZADD', ns .. ':' .. name .. ':idx', scores[i], id)
    end
    for i, pair in ipairs(prefix) do
        redis.call('ZADD', ns .. ':' .. pair[1] .. ':pre', members.pre[i], pair[2] .. '\0' .. id)
    end
    for i, pair in ipairs(suffix) do
        redis.call('ZADD', ns .. ':' .. pair[1] .. ':suf', members.suf[i], pair[2] .. '\0' .. id)
    end
    for _, point in ipairs(points) do
        redis.call('GEOADD', ns .. ':' .. point[1] .. ':geo', point[2], point[3], id)
    end

    if not fresh then
        redis.call('HDEL', ns .. '::', id)
    end
    if is_delete then
        redis.call('DEL', row, unpack(unsafe))
    else
        local index_data = cjson.encode({keys, scored, prefix, suffix, geo})
        if fresh then
            -- a new row: its fields and bookkeeping in one command
            pairs_[#pairs_ + 1] = '-index-data-'
            pairs_[#pairs_ + 1] = index_data
            call_chunked('HMSET', row, pairs_)
        elseif index_data ~= old_index_data then
            redis.call('HSET', row, '-index-data-', index_data)
        end
    end
    -- expiry: models with `_ttl` only ------------------------------------------------------
    if ttl_op then
        expiry_apply(ns, id, row, ttl_op, ttl_ms, is_delete)
    end
    -- ---------------------------------------------------------------------------------------
    allocated[block] = new_id
end
return result(blocks, 'ok', {})
