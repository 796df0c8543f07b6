package main

import "testing"

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
