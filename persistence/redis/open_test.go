package redis

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"granary/persistence"
)

func TestNewRejectsBadOptions(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for name, try := range map[string]func() (*Store, error){
		"nil client":          func() (*Store, error) { return New(nil, Options{}) },
		"negative partitions": func() (*Store, error) { return New(c, Options{Partitions: -1}) },
		"brace in prefix":     func() (*Store, error) { return New(c, Options{KeyPrefix: "a{b"}) },
	} {
		if _, err := try(); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
	s, err := New(c, Options{})
	if err != nil || s.Partitions() != 1 || s.keys.prefix != DefaultKeyPrefix {
		t.Fatalf("New with zero options: %v, %v", s, err)
	}
}

func TestOpenOwnsItsClient(t *testing.T) {
	mr := miniredis.RunT(t)
	s, err := Open(t.Context(), persistence.BackendConfig{URL: "redis://" + mr.Addr() + "/0", Partitions: 3, KeyPrefix: "app"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if s.Partitions() != 3 {
		t.Fatalf("Partitions() = %d, want 3", s.Partitions())
	}
	if _, err := s.Append(t.Context(), "x", 0, []persistence.EventData{{Type: "t"}}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	p := s.PartitionOf("x")
	if !mr.Exists(s.(*Store).keys.stream(p, "x")) || s.(*Store).keys.prefix != "app" {
		t.Fatalf("keys not under prefix app: %v", mr.Keys())
	}
	rs := s.(*Store)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The client itself is closed, not only the Store.
	if err := rs.client.Ping(t.Context()).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Fatalf("client after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestOpenFailures(t *testing.T) {
	// A port nothing listens on: connecting fails at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	for name, url := range map[string]string{
		// max_retries=-1 skips go-redis's backoff between dial attempts.
		"no server":    "redis://" + dead + "?max_retries=-1",
		"bad URL":      "redis://:secret@host:notaport",
		"wrong scheme": "http://" + dead,
	} {
		s, err := Open(t.Context(), persistence.BackendConfig{URL: url})
		if err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}

var registerOnce sync.Once

func TestOpenThroughRegistry(t *testing.T) {
	registerOnce.Do(func() {
		persistence.Register("redis", Open)
		persistence.Register("rediss", Open)
	})
	mr := miniredis.RunT(t)
	s, err := persistence.Open(t.Context(), persistence.BackendConfig{URL: "redis://" + mr.Addr()})
	if err != nil {
		t.Fatalf("persistence.Open: %v", err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if s.Partitions() != 1 {
		t.Fatalf("Partitions() = %d, want the default 1", s.Partitions())
	}
}
