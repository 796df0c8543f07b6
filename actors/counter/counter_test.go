package counter_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"granary/actors/counter"
	"granary/messages"
)

func inc(by int64) *messages.CounterRequest {
	return &messages.CounterRequest{Command: &messages.CounterRequest_Increment{Increment: &messages.IncrementCounter{By: by}}}
}

func TestDecideAndApply(t *testing.T) {
	now := time.Unix(1, 0)
	var s counter.State
	for _, req := range []*messages.CounterRequest{inc(2), inc(3),
		{Command: &messages.CounterRequest_Reset_{Reset_: &messages.ResetCounter{}}}, inc(7)} {
		evs, err := counter.Decide(s, req, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			s = counter.Apply(s, "c", ev)
		}
	}
	if s.Value != 7 || s.Version != 4 {
		t.Fatalf("state %+v, want value 7 at version 4", s)
	}
	for _, tc := range []struct {
		s  counter.State
		by int64
	}{{counter.State{}, 0}, {counter.State{}, -1}, {counter.State{}, counter.MaxIncrement + 1}, {counter.State{Value: math.MaxInt64 - 1}, 2}} {
		_, err := counter.Decide(tc.s, inc(tc.by), now)
		var ve *counter.ValidationError
		if !errors.As(err, &ve) || ve.Field != "by" {
			t.Errorf("increment %d on %d: got %v, want a validation error on by", tc.by, tc.s.Value, err)
		}
	}
}

func TestNamePattern(t *testing.T) {
	for name, ok := range map[string]bool{"hits": true, "a.b-c_9": true, "": false, "a/b": false, "x y": false, string(make([]byte, 65)): false} {
		if counter.NamePattern.MatchString(name) != ok {
			t.Errorf("NamePattern(%q) = %v, want %v", name, !ok, ok)
		}
	}
}
