package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
