package redis

import (
	_ "embed"

	goredis "github.com/redis/go-redis/v9"
)

// The scripts are immutable and stateless; Script.Run sends EVALSHA and
// falls back to EVAL when the server has not cached them yet.
var (
	//go:embed append.lua
	appendSrc    string
	appendScript = goredis.NewScript(appendSrc)

	//go:embed decline.lua
	declineSrc    string
	declineScript = goredis.NewScript(declineSrc)

	//go:embed stream_bodies.lua
	streamBodiesSrc string

	//go:embed read_stream.lua
	readStreamSrc    string
	readStreamScript = goredis.NewScript(streamBodiesSrc + readStreamSrc)

	//go:embed load_stream.lua
	loadStreamSrc    string
	loadStreamScript = goredis.NewScript(streamBodiesSrc + loadStreamSrc)

	//go:embed read_partition.lua
	readPartitionSrc    string
	readPartitionScript = goredis.NewScript(readPartitionSrc)

	//go:embed stream_version.lua
	streamVersionSrc    string
	streamVersionScript = goredis.NewScript(streamVersionSrc)

	//go:embed put_saga.lua
	putSagaSrc    string
	putSagaScript = goredis.NewScript(putSagaSrc)

	//go:embed snapshot.lua
	snapshotSrc    string
	snapshotScript = goredis.NewScript(snapshotSrc)
)
