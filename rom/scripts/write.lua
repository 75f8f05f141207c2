-- include: _expiry.lua
-- rom's atomic writer: saves or deletes a batch of entities, in order, one at a time.
-- KEYS: none (every key name is derived from the namespace and id, like rom 1.1.2).
-- ARGV: either the items below as separate arguments, or ARGV[1] alone holding them all as
-- one JSON array (texts, and numbers for the counts): one argument is much cheaper for the
-- client to send than dozens.
-- Items: number of entity blocks (negated when a block carries an expiry op); then per
-- entity:
--   ns, id (always given: ids are reserved by the client before the call, so replaying a
--   call whose reply was lost writes the same rows again instead of new ones),
--   mode: 'n' a new entity (nothing old to read or remove), 's' a save, 'd' a delete, or
--     'u' an update that changes only scores: the entries below are just the changed
--     scores (the entry names, and so the bookkeeping, stay); when the row's bookkeeping
--     does not list them all (or legacy bookkeeping exists) nothing of the block is written
--     and the call returns status 'replan' (the caller sends a full plan),
--   [models with `_ttl` only: the mode is followed by 'e', then come the expiry op and its
--   ms argument, see _expiry.lua]
--   n_race,    n x (field, expected stored value)       -- data-race check (updates only)
--   n_absent,  n x field                                 -- fields that must still be absent
--   n_claim,   n x (unique index name, value)            -- unique values to claim
--     (deletes: race/absent list the unique-related fields as last read and claims name
--     every unique index with an empty value; nothing is claimed and a delete never fails:
--     when a listed field changed since, every field of those unique indexes that maps to
--     this id is released, so a concurrent change of a unique value cannot leave it behind)
--   n_release, n x (unique index name, value)            -- unique values to release
--   n_current, n x (unique index name, 's' | 'c')        -- forced saves: release the row's
--     current value of these indexes when it maps to this id and is not claimed here
--   n_hdel,    n x field                                 -- row fields to delete
--   n_hset,    n x (field, value)                        -- row fields to write
--   n_unsafe,  n x key                                   -- UnsafeColumn keys (deletes)
--   n_keys,    n x "attr:token"                          -- SET index entries
--   n_scores,  n x ("attr" | "attr:key", score)          -- ZSET index entries
--   n_prefix,  n x (attr, token, score)                  -- <ns>:<attr>:pre members
--   n_suffix,  n x (attr, reversed token, score)         -- <ns>:<attr>:suf members
--   n_geo,     n x (geo index name, lon, lat)            -- <ns>:<name>:geo members
-- Returns {applied, status, n, detail x n}: `applied` blocks were written; status is 'ok',
-- or on the first failure (nothing of that block is written, later blocks are not
-- attempted) 'race' with the changed fields as details, 'unique' with the index name, or
-- 'replan' (mode 'u', see above), or (models with `_ttl`) 'expired' / 'alive'.
-- A race check that finds the row exactly as this block leaves it (a replay of a call
-- whose reply was lost, e.g. by a client that retries) is not a race: the block is
-- written again, which changes nothing.
-- Index additions and removals of a call of several blocks are grouped per key over the
-- whole call (one SADD / ZADD / ZREM ... with many members) and sent before the call
-- returns; a block whose row an earlier block of the call touched sends the pending ones
-- first. A call of one block sends them as they come (nothing to group).
-- Every input the server could reject (scores, coordinates) was validated by the caller.

local items = ARGV
if string.byte(ARGV[1], 1) == 91 then  -- '[': the JSON form
    items = cjson.decode(ARGV[1])
end
local pos = 2
-- The next list of the block: its count n, then n * width items, returned flat (pairs and
-- triples are not split into tables: fewer allocations per call).
local function slice(width)
    local n = tonumber(items[pos]) * width
    local first = pos + 1
    pos = first + n
    if n <= 200 then
        return {unpack(items, first, pos - 1)}
    end
    local out = {}
    for i = 1, n do
        out[i] = items[first + i - 1]
    end
    return out
end

local function call_chunked(cmd, key, items)
    local step = 1000
    for i = 1, #items, step do
        local last = math.min(i + step - 1, #items)
        redis.call(cmd, key, unpack(items, i, last))
    end
end

-- grouped writes: command -> key -> members (with their scores / coordinates); a call of
-- one block writes directly
local grouped = {SADD = {}, SREM = {}, ZADD = {}, ZREM = {}, GEOADD = {}}
local grouped_order = {}
local widths = {SADD = 1, SREM = 1, ZADD = 2, ZREM = 1, GEOADD = 3}
local direct = tonumber(items[1]) == 1
local call = redis.call
local function queue(cmd, key, a, b, c)
    if direct then
        if c then
            call(cmd, key, a, b, c)
        elseif b then
            call(cmd, key, a, b)
        else
            call(cmd, key, a)
        end
        return
    end
    local items = grouped[cmd][key]
    if not items then
        items = {}
        grouped[cmd][key] = items
        grouped_order[#grouped_order + 1] = {cmd, key}
    end
    items[#items + 1] = a
    if b then
        items[#items + 1] = b
        if c then
            items[#items + 1] = c
        end
    end
end
local function send_grouped()
    for _, entry in ipairs(grouped_order) do
        local cmd, key = entry[1], entry[2]
        local items = grouped[cmd][key]
        local step = 999 - 999 % widths[cmd]
        for i = 1, #items, step do
            redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, #items)))
        end
    end
    grouped = {SADD = {}, SREM = {}, ZADD = {}, ZREM = {}, GEOADD = {}}
    grouped_order = {}
end

-- whether '<ns>::' (the legacy bookkeeping hash of old rom versions) exists, per namespace
local legacy_exists = {}
local function has_legacy(ns)
    local known = legacy_exists[ns]
    if known == nil then
        known = redis.call('EXISTS', ns .. '::') == 1
        legacy_exists[ns] = known
    end
    return known
end

-- Remove the index entries listed in the old bookkeeping (legacy '<ns>::' hash first)
-- that this save does not write again: entries it re-adds (same set token, same scored or
-- geo index, same prefix/suffix token) are left in place and overwritten by the adds.
-- `new` = {set = {name = true}, scored = {...}, pre = {attr\0token = true}, suf = ..., geo = ...}.
-- `raw_row`: the row's '-index-data-' (already read). Returns whether a legacy entry existed.
local function remove_old_entries(ns, id, raw_row, new)
    local raw = nil
    local legacy = false
    if has_legacy(ns) then
        raw = redis.call('HGET', ns .. '::', id)
        legacy = raw and true or false
    end
    if not raw then
        raw = raw_row
    end
    if not raw then
        return legacy
    end
    local ok, data = pcall(cjson.decode, raw)
    if not ok or type(data) ~= 'table' then
        return legacy
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
            queue('SREM', ns .. ':' .. name .. ':idx', id)
        end
    end
    for _, name in ipairs(list(2)) do
        if not new.scored[name] then
            queue('ZREM', ns .. ':' .. name .. ':idx', id)
        end
    end
    for _, pair in ipairs(list(3)) do
        if type(pair) == 'table' and #pair == 2 and not new.pre[pair[1] .. '\0' .. pair[2]] then
            queue('ZREM', ns .. ':' .. pair[1] .. ':pre', pair[2] .. '\0' .. id)
        end
    end
    for _, pair in ipairs(list(4)) do
        if type(pair) == 'table' and #pair == 2 then
            if not new.suf[pair[1] .. '\0' .. pair[2]] then
                queue('ZREM', ns .. ':' .. pair[1] .. ':suf', pair[2] .. '\0' .. id)
            end
        elseif type(pair) == 'string' and not new.geo[pair] then
            -- geo index name written by rom 1.1.2 into the wrong slot (bug G1)
            queue('ZREM', ns .. ':' .. pair .. ':geo', id)
        end
    end
    for _, name in ipairs(list(5)) do
        if type(name) == 'string' and not new.geo[name] then
            queue('ZREM', ns .. ':' .. name .. ':geo', id)
        end
    end
    return legacy
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

-- The unique field the row's current values give in index `name` ('s' single column,
-- 'c' composite), or nil when a value is missing.
local function current_field(row, name, kind)
    if kind == 's' then
        return redis.call('HGET', row, name) or nil
    end
    local values = {}
    for column in string.gmatch(name, '[^:]+') do
        local value = redis.call('HGET', row, column)
        if not value then
            return nil
        end
        values[#values + 1] = value
    end
    return composite_field(values)
end

-- Delete of a stale handle: release the unique fields of the row's current values.
local function release_current(ns, id, row, name, kind)
    local key = ns .. ':' .. name .. ':uidx'
    if kind == 's' or kind == 'c' then
        local field = current_field(row, name, kind)
        if field and redis.call('HGET', key, field) == id then
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

local function result(applied, status, details)
    send_grouped()
    local out = {applied, status, #details}
    for _, d in ipairs(details) do
        out[#out + 1] = d
    end
    return out
end

local blocks = tonumber(items[1])
if blocks < 0 then  -- some blocks carry expiry ops (models with `_ttl`): see _expiry.lua
    blocks = -blocks
    expiry_effects()
end
local seen = {}
for block = 1, blocks do
    local ns, id, mode = items[pos], items[pos + 1], items[pos + 2]
    pos = pos + 3
    -- expiry: models with `_ttl` only ------------------------------------------------------
    local ttl_op, ttl_ms = nil, nil
    if #mode > 1 then
        ttl_op, ttl_ms = items[pos], items[pos + 1]
        pos = pos + 2
        mode = mode:sub(1, 1)
    end
    -- ---------------------------------------------------------------------------------------
    local is_delete = mode == 'd'
    local fresh = mode == 'n'
    local row = ns .. ':' .. id
    if seen[row] then
        send_grouped()  -- an earlier block's entries for this row go first
    end
    seen[row] = true
    -- expiry: models with `_ttl` only ------------------------------------------------------
    if ttl_op then
        local status = expiry_check(ns, id, ttl_op, is_delete, fresh)
        if status then
            return result(block - 1, status, {})
        end
    end
    -- ---------------------------------------------------------------------------------------

    -- read the whole block (flat lists: pairs and triples stay consecutive items)
    local race = slice(2)      -- field, expected value
    local absent = slice(1)    -- field
    local claims = slice(2)    -- unique index name, value
    local releases = slice(2)  -- unique index name, value
    local current = slice(2)   -- unique index name, 's' | 'c'
    local fields = slice(1)    -- fields to delete
    local pairs_ = slice(2)    -- field, value to write
    local unsafe = slice(1)    -- keys
    local keys = slice(1)      -- "attr:token"
    local scored = slice(2)    -- name, score
    local prefix = slice(3)    -- attr, token, score
    local suffix = slice(3)    -- attr, reversed token, score
    local points = slice(3)    -- geo index name, lon, lat

    -- race check: every listed field must still hold the value read (or still be absent),
    -- or already hold what this block writes (a replayed call). The same HMGET reads the
    -- row's bookkeeping, which a save of an existing row and a delete need.
    local checked, expected = {}, {}
    for i = 1, #race, 2 do
        checked[#checked + 1] = race[i]
        expected[#checked] = race[i + 1]
    end
    for _, field in ipairs(absent) do
        checked[#checked + 1] = field
        expected[#checked] = false
    end
    local nchecked = #checked
    local old_index_data = nil
    local read_index_data = not fresh
    local changed = {}
    if nchecked > 0 or read_index_data then
        if read_index_data then
            checked[nchecked + 1] = '-index-data-'
        end
        local now = hmget_chunked(row, checked)
        if read_index_data then
            old_index_data = now[nchecked + 1]
            checked[nchecked + 1] = nil
        end
        for i = 1, nchecked do
            if now[i] ~= expected[i] then
                changed[#changed + 1] = checked[i]
            end
        end
        if #changed > 0 and not is_delete then
            local after = {}
            for i = 1, #pairs_, 2 do
                after[pairs_[i]] = pairs_[i + 1]
            end
            for _, field in ipairs(fields) do
                after[field] = false
            end
            local replay = true
            for i = 1, nchecked do
                local want = after[checked[i]]
                if want == nil then
                    want = expected[i]
                end
                if now[i] ~= want then
                    replay = false
                    break
                end
            end
            if not replay then
                return result(block - 1, 'race', changed)
            end
            changed = {}
        end
    end

    if mode == 'u' then
        local listed = false
        if old_index_data and not has_legacy(ns) then
            local ok, data = pcall(cjson.decode, old_index_data)
            if ok and type(data) == 'table' and type(data[2]) == 'table' then
                local names = {}
                for _, name in ipairs(data[2]) do
                    names[name] = true
                end
                listed = true
                for i = 1, #scored, 2 do
                    if not names[scored[i]] then
                        listed = false
                    end
                end
            end
        end
        if not listed then
            return result(block - 1, 'replan', {})
        end
    end

    if is_delete then
        if #changed > 0 then
            -- the unique values changed since they were read: release the current ones
            for i = 1, #claims, 2 do
                release_current(ns, id, row, claims[i], claims[i + 1])
            end
        end
    elseif #claims > 0 then
        local owned = {}
        for i = 1, #claims, 2 do
            local owner = redis.call('HGET', ns .. ':' .. claims[i] .. ':uidx', claims[i + 1])
            -- (models with `_ttl`: an expired owner's claim is taken over; its removal
            -- later releases only the fields that still map to it)
            if owner and owner ~= id and not (ttl_op and expiry_due(ns, owner)) then
                return result(block - 1, 'unique', {claims[i]})
            end
            owned[i] = owner == id
        end
        for i = 1, #claims, 2 do
            if not owned[i] then
                redis.call('HSET', ns .. ':' .. claims[i] .. ':uidx', claims[i + 1], id)
            end
        end
    end

    for i = 1, #releases, 2 do
        local key = ns .. ':' .. releases[i] .. ':uidx'
        if redis.call('HGET', key, releases[i + 1]) == id then
            redis.call('HDEL', key, releases[i + 1])
        end
    end
    for i = 1, #current, 2 do
        -- a forced save: the row may hold values this handle never saw
        local name = current[i]
        local field = current_field(row, name, current[i + 1])
        if field then
            local kept = false
            for j = 1, #claims, 2 do
                if claims[j] == name and claims[j + 1] == field then
                    kept = true
                end
            end
            local key = ns .. ':' .. name .. ':uidx'
            if not kept and redis.call('HGET', key, field) == id then
                redis.call('HDEL', key, field)
            end
        end
    end

    if #fields > 0 then
        call_chunked('HDEL', row, fields)
    end

    if is_delete then
        local legacy = remove_old_entries(ns, id, old_index_data,
                                          {set = {}, scored = {}, pre = {}, suf = {}, geo = {}})
        if legacy then
            redis.call('HDEL', ns .. '::', id)
        end
        redis.call('DEL', row, unpack(unsafe))
    else
        local index_data = old_index_data
        if mode == 'u' then
            -- only scores change: the bookkeeping already lists every entry
            for i = 1, #scored, 2 do
                queue('ZADD', ns .. ':' .. scored[i] .. ':idx', scored[i + 1], id)
            end
        else
            -- the bookkeeping of the entries this save writes
            local geo, geo_seen = {}, {}
            for i = 1, #points, 3 do
                local name = points[i]
                if not geo_seen[name] then
                    geo_seen[name] = true
                    geo[#geo + 1] = name
                end
            end
            local names, recorded_pre, recorded_suf = {}, {}, {}
            for i = 1, #scored, 2 do
                names[#names + 1] = scored[i]
            end
            for i = 1, #prefix, 3 do
                recorded_pre[#recorded_pre + 1] = {prefix[i], prefix[i + 1]}
            end
            for i = 1, #suffix, 3 do
                recorded_suf[#recorded_suf + 1] = {suffix[i], suffix[i + 1]}
            end
            index_data = cjson.encode({keys, names, recorded_pre, recorded_suf, geo})
            -- rewrite all entries of the row (which repairs a damaged index); with the same
            -- bookkeeping as before there is nothing old to remove
            local legacy = false
            if not fresh and (old_index_data ~= index_data or has_legacy(ns)) then
                local new = {set = {}, scored = {}, pre = {}, suf = {}, geo = geo_seen}
                for _, name in ipairs(keys) do
                    new.set[name] = true
                end
                for _, name in ipairs(names) do
                    new.scored[name] = true
                end
                for i = 1, #prefix, 3 do
                    new.pre[prefix[i] .. '\0' .. prefix[i + 1]] = true
                end
                for i = 1, #suffix, 3 do
                    new.suf[suffix[i] .. '\0' .. suffix[i + 1]] = true
                end
                legacy = remove_old_entries(ns, id, old_index_data, new)
            end
            local prefix_ns = ns .. ':'
            for _, name in ipairs(keys) do
                queue('SADD', prefix_ns .. name .. ':idx', id)
            end
            for i = 1, #scored, 2 do
                queue('ZADD', prefix_ns .. scored[i] .. ':idx', scored[i + 1], id)
            end
            for i = 1, #prefix, 3 do
                queue('ZADD', prefix_ns .. prefix[i] .. ':pre', prefix[i + 2],
                      prefix[i + 1] .. '\0' .. id)
            end
            for i = 1, #suffix, 3 do
                queue('ZADD', prefix_ns .. suffix[i] .. ':suf', suffix[i + 2],
                      suffix[i + 1] .. '\0' .. id)
            end
            for i = 1, #points, 3 do
                queue('GEOADD', prefix_ns .. points[i] .. ':geo', points[i + 1], points[i + 2], id)
            end
            if legacy then
                redis.call('HDEL', ns .. '::', id)
            end
        end
        if index_data ~= old_index_data then
            pairs_[#pairs_ + 1] = '-index-data-'
            pairs_[#pairs_ + 1] = index_data
        end
        if #pairs_ > 0 then
            call_chunked('HMSET', row, pairs_)
        end
    end
    -- expiry: models with `_ttl` only ------------------------------------------------------
    if ttl_op then
        expiry_apply(ns, id, row, ttl_op, ttl_ms, is_delete)
    end
    -- ---------------------------------------------------------------------------------------
end
return result(blocks, 'ok', {})
