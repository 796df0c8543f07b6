package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

const goodSecret = "0123456789abcdef0123456789abcdef"

func TestLoadConfigRefusesUnsafeSettings(t *testing.T) {
	tests := []struct {
		name string
		mode mode
		env  map[string]string
		want string
	}{
		{"node without secret", modeNode, map[string]string{"GRANARY_REDIS_URL": "redis://127.0.0.1:1"}, "GRANARY_JWT_SECRET is required"},
		{"short secret", modeDev, map[string]string{"GRANARY_JWT_SECRET": "short"}, "need at least 32"},
		{"node without redis", modeNode, map[string]string{"GRANARY_JWT_SECRET": goodSecret}, "GRANARY_REDIS_URL is required"},
		{"bad duration", modeDev, map[string]string{"GRANARY_CALL_TIMEOUT": "soon"}, "GRANARY_CALL_TIMEOUT"},
		{"bad snapshot interval", modeDev, map[string]string{"GRANARY_SNAPSHOT_EVERY": "0"}, "GRANARY_SNAPSHOT_EVERY"},
		{"negative rate", modeDev, map[string]string{"GRANARY_RATE_LIMIT": "-1"}, "GRANARY_RATE_LIMIT"},
		{"unknown provider", modeDev, map[string]string{"GRANARY_CLUSTER_PROVIDER": "zookeeper"}, "unknown Provider"},
		{"automanaged without peers", modeDev, map[string]string{"GRANARY_CLUSTER_PROVIDER": "automanaged", "GRANARY_AUTOMANAGED_PORT": "6330"}, "needs Peers"},
		{"bad log level", modeDev, map[string]string{"GRANARY_LOG_LEVEL": "loud"}, "GRANARY_LOG_LEVEL"},
		{"pprof on every interface", modeDev, map[string]string{"GRANARY_PPROF_ADDR": ":6060"}, "not a loopback address"},
		{"pprof on a public address", modeNode, map[string]string{"GRANARY_JWT_SECRET": goodSecret, "GRANARY_REDIS_URL": "redis://127.0.0.1:1", "GRANARY_PPROF_ADDR": "0.0.0.0:6060"}, "GRANARY_PPROF_ADDR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(tc.mode, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	dev, err := loadConfig(modeDev, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if dev.HTTPAddr != "127.0.0.1:8080" || dev.RateLimit != 0 || !dev.secretWasGenerated || len(dev.JWTSecret) < 32 {
		t.Fatalf("dev defaults: %+v", dev)
	}
	node, err := loadConfig(modeNode, env(map[string]string{"GRANARY_JWT_SECRET": goodSecret, "GRANARY_REDIS_URL": "redis://127.0.0.1:6379"}))
	if err != nil {
		t.Fatal(err)
	}
	if node.RateLimit != 600 || node.Cluster.Host != "127.0.0.1" || node.secretWasGenerated {
		t.Fatalf("node defaults: %+v", node)
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, env(nil), &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, s := range settings(modeNode) {
		if !strings.Contains(out.String(), s.name) {
			t.Errorf("help does not list %s", s.name)
		}
	}
	if err := run(context.Background(), []string{"bogus"}, env(nil), &out, &out); err != errUsage {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestPprofAddrIsLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060":  true,
		"127.0.0.2:0":     true,
		"[::1]:6060":      true,
		"localhost:6060":  true,
		":6060":           false,
		"0.0.0.0:6060":    false,
		"[::]:6060":       false,
		"10.1.2.3:6060":   false,
		"192.168.0.1:80":  false,
		"example.com:80":  false,
		"6060":            false,
		"127.0.0.1":       false,
		"127.0.0.1:http":  false,
		"127.0.0.1:1e5":   false,
		"127.0.0.1:70000": false,
	} {
		c, err := loadConfig(modeDev, env(map[string]string{"GRANARY_PPROF_ADDR": addr}))
		switch {
		case ok && (err != nil || c.PprofAddr != addr):
			t.Errorf("%q: refused or not kept: PprofAddr %q, %v", addr, c.PprofAddr, err)
		case !ok && err == nil:
			t.Errorf("%q: accepted", addr)
		case !ok && !strings.Contains(err.Error(), "GRANARY_PPROF_ADDR"):
			t.Errorf("%q: error does not name the setting: %v", addr, err)
		}
	}
	if c, err := loadConfig(modeDev, env(nil)); err != nil || c.PprofAddr != "" {
		t.Fatalf("pprof is on by default: %q, %v", c.PprofAddr, err)
	}
}

// Issue 13: the etcd provider is configured from the environment, and a
// setting it cannot use is refused at start with the variable's name rather
// than at the first etcd call.
func TestEtcdSettings(t *testing.T) {
	base := func(kv map[string]string) map[string]string {
		out := map[string]string{"GRANARY_CLUSTER_PROVIDER": "etcd"}
		for k, v := range kv {
			out[k] = v
		}
		return out
	}
	c, err := loadConfig(modeDev, env(base(map[string]string{
		"GRANARY_ETCD_ENDPOINTS":    " http://127.0.0.1:2379, http://[::1]:2380 ",
		"GRANARY_ETCD_PREFIX":       "/prod",
		"GRANARY_ETCD_LEASE_TTL":    "4s",
		"GRANARY_ETCD_CALL_TIMEOUT": "500ms",
		"GRANARY_ETCD_DIAL_TIMEOUT": "2s",
	})))
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Cluster
	if cl.Provider != "etcd" || strings.Join(cl.EtcdEndpoints, " ") != "http://127.0.0.1:2379 http://[::1]:2380" ||
		cl.EtcdPrefix != "/prod" || cl.EtcdLeaseTTL != 4*time.Second || cl.EtcdCallTimeout != 500*time.Millisecond ||
		cl.EtcdDialTimeout != 2*time.Second {
		t.Fatalf("etcd settings not applied: %+v", cl)
	}
	// Unset durations stay zero: the provider's defaults apply.
	c, err = loadConfig(modeDev, env(base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://localhost:2379"})))
	if err != nil || c.Cluster.EtcdLeaseTTL != 0 || c.Cluster.EtcdPrefix != "" {
		t.Fatalf("defaults: %+v, %v", c.Cluster, err)
	}

	refused := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no endpoints", base(nil), "needs GRANARY_ETCD_ENDPOINTS"},
		{"bare host:port", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "127.0.0.1:2379"}), "GRANARY_ETCD_ENDPOINTS"},
		{"no port", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1"}), "want http://host:port"},
		{"bad port", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:99999"}), "not 1-65535"},
		{"no host", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://:2379"}), "want http://host:port"},
		{"path", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379/v3"}), "no credentials, path or query"},
		{"credentials", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://u:p@127.0.0.1:2379"}), "no credentials"},
		{"https", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "https://127.0.0.1:2379"}), "needs TLS"},
		{"one bad of two", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379,grpc://127.0.0.1:2380"}), "grpc://"},
		{"only commas", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": ",,"}), "at least one"},
		{"relative prefix", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_PREFIX": "granary"}), "GRANARY_ETCD_PREFIX"},
		{"fractional ttl", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_LEASE_TTL": "2500ms"}), "whole seconds"},
		{"zero ttl", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_LEASE_TTL": "0s"}), "GRANARY_ETCD_LEASE_TTL"},
		{"call timeout past ttl", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_LEASE_TTL": "2s", "GRANARY_ETCD_CALL_TIMEOUT": "2s"}), "GRANARY_ETCD_CALL_TIMEOUT 2s must be below GRANARY_ETCD_LEASE_TTL 2s"},
		{"call timeout past default ttl", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_CALL_TIMEOUT": "5s"}), "below GRANARY_ETCD_LEASE_TTL 3s"},
		{"bad dial timeout", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_ETCD_DIAL_TIMEOUT": "-1s"}), "GRANARY_ETCD_DIAL_TIMEOUT"},
		{"slash in cluster name", base(map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379", "GRANARY_CLUSTER_NAME": "a/b"}), "GRANARY_CLUSTER_NAME"},
		{"endpoints without etcd", map[string]string{"GRANARY_ETCD_ENDPOINTS": "http://127.0.0.1:2379"}, `GRANARY_ETCD_ENDPOINTS is set but GRANARY_CLUSTER_PROVIDER is "local"`},
		{"ttl with automanaged", map[string]string{"GRANARY_CLUSTER_PROVIDER": "automanaged", "GRANARY_AUTOMANAGED_PORT": "6330", "GRANARY_CLUSTER_PEERS": "127.0.0.1:6330", "GRANARY_ETCD_LEASE_TTL": "3s"}, "GRANARY_ETCD_LEASE_TTL is set"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(modeDev, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// A Redis Cluster URL raises the partition default so that the journal
// reaches every master; an explicit count is kept, 1 with a warning.
func TestJournalPartitionsDefault(t *testing.T) {
	const single, clustered = "redis://127.0.0.1:6379/0", "redis://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002"
	for _, tc := range []struct {
		name, url, partitions string
		want                  int
		warns                 bool
	}{
		{"single server", single, "", 1, false},
		{"single server, explicit", single, "8", 8, false},
		{"cluster", clustered, "", clusterPartitions, false},
		{"cluster, explicit", clustered, "32", 32, false},
		{"cluster, explicit 1", clustered, "1", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadConfig(modeNode, env(map[string]string{"GRANARY_JWT_SECRET": goodSecret,
				"GRANARY_REDIS_URL": tc.url, "GRANARY_JOURNAL_PARTITIONS": tc.partitions}))
			if err != nil {
				t.Fatal(err)
			}
			if c.JournalPartitions != tc.want {
				t.Errorf("JournalPartitions = %d, want %d", c.JournalPartitions, tc.want)
			}
			if got := len(c.warnings) > 0; got != tc.warns {
				t.Errorf("warnings %q, want some: %v", c.warnings, tc.warns)
			}
		})
	}
}

// The gateways' client is of the store's kind: a cluster client for the
// cluster URL form, with callers' deadlines honoured either way.
func TestOpenEdgeRedisFollowsTheURL(t *testing.T) {
	c, err := openEdgeRedis("redis://127.0.0.1:7000?addr=127.0.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cc, ok := c.(*goredis.ClusterClient); !ok || !cc.Options().ContextTimeoutEnabled {
		t.Fatalf("cluster URL: %T, want a *goredis.ClusterClient honouring deadlines", c)
	}
	c, err = openEdgeRedis("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc, ok := c.(*goredis.Client); !ok || !sc.Options().ContextTimeoutEnabled {
		t.Fatalf("single-server URL: %T, want a *goredis.Client honouring deadlines", c)
	}
	if c, err := openEdgeRedis("memory://"); c != nil || err != nil {
		t.Fatalf("memory URL: %v, %v; want no client", c, err)
	}
	if _, err := openEdgeRedis("redis://:secret@127.0.0.1:1/2?addr=127.0.0.1:2"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("cluster URL with a database: %v, want an error not quoting the password", err)
	}
}
