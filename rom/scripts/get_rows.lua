-- include: _read_row.lua
-- Model.get() of several ids: every row in one atomic call.
-- KEYS: the row hashes (<ns>:<id>).
-- ARGV[1 ..]: what to read of each row (see read_row: n, primary key position, fields).
-- Returns per key, in KEYS order, its row as read_row returns it (nil for a missing row;
-- an empty list for a missing row when whole rows are read).
local rows = {}
for i, key in ipairs(KEYS) do
    rows[i] = read_row(key, 1)
end
return rows
