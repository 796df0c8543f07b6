-- The version of a stream: its list's length. A script only so that it can
-- ride the journal's pipelines (redispipe runs scripts), behind the appends
-- of the same stream.
return redis.call('LLEN', KEYS[1])
