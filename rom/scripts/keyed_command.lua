-- keyed_command.lua: run one Redis command whose key names are given as KEYS, so that a
-- Redis Cluster client routes it by those keys without asking a server which arguments are
-- keys (ZUNIONSTORE, ZINTERSTORE and GEORADIUS ... STOREDIST have "movable" keys, which
-- redis-py resolves with an extra COMMAND GETKEYS round trip). Used on clusters only.
-- KEYS     every key the command names (all in one hash slot), in any order
-- ARGV[1]  the command name; ARGV[2..] its arguments exactly as they would be sent
-- Returns  the command's reply
return redis.call(unpack(ARGV))
