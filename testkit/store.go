package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
	"granary/persistence/redis"
)

// RedisURLEnv names the variable that points tests at a real redis-server.
const RedisURLEnv = "GRANARY_REDIS_URL"

// NewStore returns a Redis-backed store for one test: on the real server
// named by GRANARY_REDIS_URL when set (under a key prefix of its own,
// deleted at the end), else on an embedded miniredis.
func NewStore(t testing.TB) persistence.Store {
	t.Helper()
	return NewStoreWithPartitions(t, 1)
}

// NewStoreWithPartitions is NewStore with a journal partition count.
func NewStoreWithPartitions(t testing.TB, partitions int) persistence.Store {
	t.Helper()
	var client *goredis.Client
	if url := os.Getenv(RedisURLEnv); url != "" {
		opt, err := goredis.ParseURL(url)
		if err != nil {
			t.Fatalf("%s: %v", RedisURLEnv, err)
		}
		client = goredis.NewClient(opt)
	} else {
		mr := miniredis.RunT(t)
		client = goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	}
	prefix := "test-" + randomID()
	s, err := redis.New(client, redis.Options{Partitions: partitions, KeyPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = s.Close() // stops its group-commit writers
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+":*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		_ = client.Close()
	})
	return s
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
