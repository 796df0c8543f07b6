package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"regexp"
	"testing"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/internal/leakcheck"
	"granary/persistence"
	"granary/persistence/journaltest"
)

// envURL names a real Redis the tests may share with others: every test
// uses its own key prefix and deletes its keys afterwards.
const envURL = "GRANARY_REDIS_URL"

func TestMain(m *testing.M) { leakcheck.Main(m) }

// server is a Redis the tests can run against.
type server struct {
	name string
	// connect returns a client and a key prefix private to tb; both are
	// cleaned up with tb.
	connect func(tb testing.TB) (goredis.UniversalClient, string)
}

func servers() []server {
	return []server{{"miniredis", miniredisClient}, {"redis", realClient}}
}

// miniredisClient starts a fresh miniredis for tb. Its prefix is empty, so
// the default prefix gets exercised too.
func miniredisClient(tb testing.TB) (goredis.UniversalClient, string) {
	mr := miniredis.RunT(tb)
	c := goredis.NewClient(&goredis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return c, ""
}

// realClient connects to the server in GRANARY_REDIS_URL, skipping tb when
// it is unset.
func realClient(tb testing.TB) (goredis.UniversalClient, string) {
	url := os.Getenv(envURL)
	if url == "" {
		tb.Skipf("%s not set", envURL)
	}
	opt, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatalf("%s: %v", envURL, err)
	}
	c := goredis.NewClient(opt)
	prefix := uniquePrefix(tb)
	tb.Cleanup(func() {
		deleteKeys(tb, c, prefix)
		_ = c.Close()
	})
	return c, prefix
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// uniquePrefix is readable (the test's name) and unique (random suffix),
// free of glob and hash-tag characters so SCAN MATCH can use it verbatim.
func uniquePrefix(tb testing.TB) string {
	name := unsafeChars.ReplaceAllString(tb.Name(), "_")
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	return "granarytest-" + name + "-" + hex.EncodeToString(r[:])
}

func deleteKeys(tb testing.TB, c goredis.UniversalClient, prefix string) {
	// tb's context is cancelled by the time cleanups run.
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			if err := c.Del(ctx, batch...).Err(); err != nil {
				tb.Errorf("cleanup: DEL: %v", err)
			}
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		tb.Errorf("cleanup: SCAN %s:*: %v", prefix, err)
	}
}

// newStore returns a store on srv; the store does not own the client.
func newStore(tb testing.TB, srv server, partitions int) (*Store, goredis.UniversalClient) {
	c, prefix := srv.connect(tb)
	s, err := New(c, Options{Partitions: partitions, KeyPrefix: prefix})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s, c
}

func TestConformance(t *testing.T) {
	for _, srv := range servers() {
		t.Run(srv.name, func(t *testing.T) {
			if srv.name == "redis" && os.Getenv(envURL) == "" {
				t.Skipf("%s not set", envURL)
			}
			journaltest.Run(t, func(t *testing.T, partitions int) persistence.Store {
				s, _ := newStore(t, srv, partitions)
				return s
			})
		})
	}
	// Tiny reply limits make every read cross many chunk boundaries, cut
	// by event count and by bytes in turn.
	t.Run("miniredis-small-replies", func(t *testing.T) {
		journaltest.Run(t, func(t *testing.T, partitions int) persistence.Store {
			s, _ := newStore(t, server{"miniredis", miniredisClient}, partitions)
			s.readChunk, s.replyBudget = 37, 1500
			return s
		})
	})
}
