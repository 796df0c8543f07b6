package main

import (
	"strings"
	"testing"
)

func TestCommandStatsPerOp(t *testing.T) {
	before := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=10,usec=400,usec_per_call=40.00,rejected_calls=0,failed_calls=0\r\ncmdstat_set:calls=5,usec=10,usec_per_call=2.00\r\ncmdstat_info:calls=1,usec=50\r\n")
	after := parseCommandStats("# Commandstats\r\ncmdstat_evalsha:calls=110,usec=4400,usec_per_call=40.00\r\ncmdstat_set:calls=205,usec=610,usec_per_call=3.00\r\ncmdstat_xadd:calls=100,usec=20\r\ncmdstat_info:calls=2,usec=100\r\n")
	got := commandsPerOp(before, after, 100)
	want := []redisCommand{{"evalsha", 1, 40}, {"set", 2, 6}}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	if s := commandsText(got); s != "evalsha 1.00/op 40 µs, set 2.00/op 6 µs" {
		t.Fatalf("text %q", s)
	}
}

func TestPipelineBatchSizes(t *testing.T) {
	read := func(s string) map[string][2]float64 { return parsePipelineCounters(strings.NewReader(s)) }
	before := read("# HELP x\ngranary_redis_pipelines_total{pipe=\"journal\"} 10\ngranary_redis_pipelined_calls_total{pipe=\"journal\"} 40\ngranary_redis_pipelines_total{pipe=\"idempotency\"} 5\ngranary_redis_pipelined_calls_total{pipe=\"idempotency\"} 5\ngo_goroutines 7\n")
	after := read("granary_redis_pipelines_total{pipe=\"journal\"} 110\ngranary_redis_pipelined_calls_total{pipe=\"journal\"} 440\ngranary_redis_pipelines_total{pipe=\"idempotency\"} 5\ngranary_redis_pipelined_calls_total{pipe=\"idempotency\"} 5\n")
	got := batchSizes(before, after)
	if len(got) != 1 || got["journal"] != 4 {
		t.Fatalf("batch sizes %v, want journal 4 only", got)
	}
	if s := batchText(map[string]float64{"journal": 4, "idempotency": 1.25}); s != "idempotency 1.2, journal 4.0" {
		t.Fatalf("text %q", s)
	}
	if read("go_goroutines 7\n") != nil {
		t.Fatal("a node without pipelines should read as nil")
	}
}
