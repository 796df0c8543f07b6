package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
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

// pipelineCounters reads the node's granary_redis_pipelines_total and
// granary_redis_pipelined_calls_total per pipe from /metrics: key
// "journal" → {pipelines, calls}. Nil when the node has none (the
// baseline).
func pipelineCounters(ctx context.Context, base string) map[string][2]float64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	return parsePipelineCounters(resp.Body)
}

func parsePipelineCounters(r io.Reader) map[string][2]float64 {
	out := map[string][2]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		idx := -1
		rest, ok := strings.CutPrefix(line, "granary_redis_pipelines_total{")
		if ok {
			idx = 0
		} else if rest, ok = strings.CutPrefix(line, "granary_redis_pipelined_calls_total{"); ok {
			idx = 1
		} else {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		pipe, ok := strings.CutPrefix(labels, `pipe="`)
		if !ok {
			continue
		}
		pipe, _, _ = strings.Cut(pipe, `"`)
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		v := out[pipe]
		v[idx] = f
		out[pipe] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// batchSizes is the mean calls per pipeline of each pipe between two
// readings (pipes that sent nothing left out).
func batchSizes(before, after map[string][2]float64) map[string]float64 {
	out := map[string]float64{}
	for pipe, a := range after {
		b := before[pipe]
		if p := a[0] - b[0]; p > 0 {
			out[pipe] = (a[1] - b[1]) / p
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func batchText(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.1f", k, m[k])
	}
	return b.String()
}
