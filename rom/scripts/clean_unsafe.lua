-- Delete UnsafeColumn keys whose entity row is gone (rom._maintenance.clean_unsafe_cols).
-- KEYS: none
-- ARGV: pairs (unsafe key '<ns>:<id>:<attr>', row key '<ns>:<id>')
-- Returns: the number of keys deleted.
local deleted = 0
for i = 1, #ARGV, 2 do
    if redis.call('EXISTS', ARGV[i + 1]) == 0 then
        deleted = deleted + redis.call('DEL', ARGV[i])
    end
end
return deleted
