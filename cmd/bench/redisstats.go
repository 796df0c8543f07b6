package main

import (
	"bufio"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisCommand is what one Redis command cost a round, per 2xx answer:
// where a side's Redis CPU goes. Calls a Lua script makes are counted
// under their own command as well as in the script's time.
type redisCommand struct {
	Name       string  `json:"name"`
	CallsPerOp float64 `json:"calls_per_op"`
	UsPerOp    float64 `json:"us_per_op"`
}

type cmdStat struct{ calls, usec int64 }

// commandStats reads INFO commandstats.
func commandStats(ctx context.Context, c *redis.Client) (map[string]cmdStat, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	return parseCommandStats(s), nil
}

// parseCommandStats parses lines like
// "cmdstat_evalsha:calls=10,usec=420,usec_per_call=42.00,...".
func parseCommandStats(s string) map[string]cmdStat {
	out := map[string]cmdStat{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, fields, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		var st cmdStat
		for _, f := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(f, "=")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "calls":
				st.calls = n
			case "usec":
				st.usec = n
			}
		}
		out[name] = st
	}
	return out
}

// commandsPerOp is after-before per op, most expensive first, leaving out
// the commands the bench's own probes make and those under 0.5 µs/op.
func commandsPerOp(before, after map[string]cmdStat, ops uint64) []redisCommand {
	if ops == 0 {
		return nil
	}
	var out []redisCommand
	for name, a := range after {
		if name == "info" {
			continue
		}
		b := before[name]
		us := float64(a.usec-b.usec) / float64(ops)
		if us < 0.5 {
			continue
		}
		out = append(out, redisCommand{Name: name, CallsPerOp: float64(a.calls-b.calls) / float64(ops), UsPerOp: us})
	}
	slices.SortFunc(out, func(x, y redisCommand) int {
		switch {
		case x.UsPerOp > y.UsPerOp:
			return -1
		case x.UsPerOp < y.UsPerOp:
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	return out
}

func commandsText(cs []redisCommand) string {
	var b strings.Builder
	for i, c := range cs {
		if i == 6 {
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f/op %.0f µs", c.Name, c.CallsPerOp, c.UsPerOp)
	}
	return b.String()
}
