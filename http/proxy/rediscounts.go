package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

const (
	// staleAfter: another gateway's counts older than this are ignored — it
	// stopped publishing, so it has probably gone.
	staleAfter = 2 * time.Second
	// refreshAfter re-publishes unchanged non-zero counts well before they go stale.
	refreshAfter = 500 * time.Millisecond
	// redisTimeout bounds every Redis call.
	redisTimeout = time.Second
)

// publishScript stores this gateway's in-flight counts stamped with Redis's
// clock (so gateways' clock skew does not matter) and adds its served deltas.
// KEYS: inflight hash, served hash. ARGV: gateway id, encoded counts ("" =
// none, the field is removed), then instance id / delta pairs.
var publishScript = goredis.NewScript(`
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ms .. ';' .. ARGV[2])
end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
return ms
`)

// readScript returns Redis's time, every gateway's counts and the served
// totals, dropping gateways' fields that have been stale for long.
// KEYS: inflight hash, served hash. ARGV: drop-after milliseconds.
var readScript = goredis.NewScript(`
local t = redis.call('TIME')
local ms = string.format('%d', t[1] * 1000 + math.floor(t[2] / 1000))
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local at = tonumber(string.match(all[i + 1], '^(%d+);'))
  if at == nil or tonumber(ms) - at > tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
return {ms, live, redis.call('HGETALL', KEYS[2])}
`)

// RedisCounts are in-flight counts shared by every gateway through one Redis
// hash: each gateway publishes its own non-zero counts as one field, and reads
// the others'. Total is this gateway's live count plus the others' last
// published ones, so it lags by about publishEvery for other gateways.
type RedisCounts struct {
	rdb          goredis.UniversalClient
	inflightKey  string
	servedKey    string
	gatewayID    string
	publishEvery time.Duration
	log          *slog.Logger

	mu    sync.RWMutex
	local map[string]*localCount

	others atomic.Pointer[map[string]int64]
	served atomic.Pointer[map[string]uint64]

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type localCount struct {
	live   atomic.Int64
	served atomic.Uint64 // finished since the last publish
}

var _ Counts = (*RedisCounts)(nil)

// NewRedisCounts starts publishing this gateway's counts under
// "<keyPrefix>:{registry}:inflight" and "<keyPrefix>:{registry}:served" every
// publishEvery (default 100 ms). Close stops it.
func NewRedisCounts(client goredis.UniversalClient, keyPrefix, gatewayID string, publishEvery time.Duration, logger *slog.Logger) *RedisCounts {
	if publishEvery <= 0 {
		publishEvery = 100 * time.Millisecond
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &RedisCounts{
		rdb:          client,
		inflightKey:  keyPrefix + ":{registry}:inflight",
		servedKey:    keyPrefix + ":{registry}:served",
		gatewayID:    gatewayID,
		publishEvery: publishEvery,
		log:          logger,
		local:        map[string]*localCount{},
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	c.others.Store(&map[string]int64{})
	c.served.Store(&map[string]uint64{})
	go c.loop()
	return c
}

// Add changes this gateway's in-flight count of instanceID; a negative delta
// also counts finished requests as served.
func (c *RedisCounts) Add(instanceID string, delta int64) {
	// The read lock is held across the update so that publish, which drops
	// idle entries under the write lock, never drops one being changed.
	c.mu.RLock()
	n := c.local[instanceID]
	if n != nil {
		c.addTo(n, delta)
		c.mu.RUnlock()
		return
	}
	c.mu.RUnlock()
	c.mu.Lock()
	if n = c.local[instanceID]; n == nil {
		n = &localCount{}
		c.local[instanceID] = n
	}
	c.addTo(n, delta)
	c.mu.Unlock()
}

func (c *RedisCounts) addTo(n *localCount, delta int64) {
	n.live.Add(delta)
	if delta < 0 {
		n.served.Add(uint64(-delta))
	}
}

// Total is instanceID's in-flight count across the cluster.
func (c *RedisCounts) Total(instanceID string) int64 {
	var t int64
	c.mu.RLock()
	if n := c.local[instanceID]; n != nil {
		t = n.live.Load()
	}
	c.mu.RUnlock()
	return t + (*c.others.Load())[instanceID]
}

// Served is instanceID's served total across the cluster, as of the last read.
func (c *RedisCounts) Served(instanceID string) uint64 {
	return (*c.served.Load())[instanceID]
}

// Forget drops instanceID's local count and its cluster-wide served total.
func (c *RedisCounts) Forget(instanceID string) {
	c.mu.Lock()
	delete(c.local, instanceID)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := c.rdb.HDel(ctx, c.servedKey, instanceID).Err(); err != nil {
		c.log.Warn("proxy: forget served count", "instance", instanceID, "err", err)
	}
}

// Close stops publishing and removes this gateway's counts from Redis.
func (c *RedisCounts) Close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
		defer cancel()
		if err := c.rdb.HDel(ctx, c.inflightKey, c.gatewayID).Err(); err != nil {
			c.log.Warn("proxy: remove this gateway's counts", "gateway", c.gatewayID, "err", err)
		}
	})
}

func (c *RedisCounts) loop() {
	defer close(c.done)
	t := time.NewTicker(c.publishEvery)
	defer t.Stop()
	var last string
	var lastAt time.Time
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			enc, served := c.snapshot()
			if enc != last || len(served) > 0 || (enc != "" && now.Sub(lastAt) >= refreshAfter) {
				if err := c.publish(enc, served); err != nil {
					c.log.Warn("proxy: publish in-flight counts", "err", err)
					c.restore(served)
				} else {
					last, lastAt = enc, now
				}
			}
			if err := c.read(); err != nil {
				c.log.Warn("proxy: read in-flight counts", "err", err)
			}
		}
	}
}

// snapshot encodes the non-zero live counts ("id=n,id=n", sorted by nothing:
// readers parse it whole) and takes the served deltas, dropping idle entries.
func (c *RedisCounts) snapshot() (string, map[string]uint64) {
	var b strings.Builder
	served := map[string]uint64{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, n := range c.local {
		if s := n.served.Swap(0); s > 0 {
			served[id] = s
		}
		switch v := n.live.Load(); {
		case v > 0:
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(id)
			b.WriteByte('=')
			b.WriteString(strconv.FormatInt(v, 10))
		default:
			// Below zero only when a request outlived Forget: nothing to keep.
			delete(c.local, id)
		}
	}
	return b.String(), served
}

// restore gives back served deltas a failed publish did not store.
func (c *RedisCounts) restore(served map[string]uint64) {
	for id, s := range served {
		c.mu.Lock()
		n := c.local[id]
		if n == nil {
			n = &localCount{}
			c.local[id] = n
		}
		n.served.Add(s)
		c.mu.Unlock()
	}
}

func (c *RedisCounts) publish(enc string, served map[string]uint64) error {
	args := make([]any, 0, 2+2*len(served))
	args = append(args, c.gatewayID, enc)
	for id, s := range served {
		args = append(args, id, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	if err := publishScript.Run(ctx, c.rdb, []string{c.inflightKey, c.servedKey}, args...).Err(); err != nil {
		return fmt.Errorf("publish to %s: %w", c.inflightKey, err)
	}
	return nil
}

func (c *RedisCounts) read() error {
	ctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
	defer cancel()
	// Fields stale for 30 × staleAfter are deleted: their gateways died
	// without Close.
	v, err := readScript.Run(ctx, c.rdb, []string{c.inflightKey, c.servedKey}, (30 * staleAfter).Milliseconds()).Slice()
	if err != nil {
		return fmt.Errorf("read %s: %w", c.inflightKey, err)
	}
	if len(v) != 3 {
		return fmt.Errorf("read %s: %d replies, want 3", c.inflightKey, len(v))
	}
	now, _ := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
	others := map[string]int64{}
	fields, _ := v[1].([]any)
	for i := 0; i+1 < len(fields); i += 2 {
		gw, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		if gw == c.gatewayID {
			continue
		}
		at, counts, ok := strings.Cut(val, ";")
		ms, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || now-ms > staleAfter.Milliseconds() {
			continue
		}
		for _, kv := range strings.Split(counts, ",") {
			id, n, ok := strings.Cut(kv, "=")
			if x, err := strconv.ParseInt(n, 10, 64); ok && err == nil {
				others[id] += x
			}
		}
	}
	served := map[string]uint64{}
	sf, _ := v[2].([]any)
	for i := 0; i+1 < len(sf); i += 2 {
		id, _ := sf[i].(string)
		n, _ := sf[i+1].(string)
		if x, err := strconv.ParseUint(n, 10, 64); err == nil {
			served[id] = x
		}
	}
	c.others.Store(&others)
	c.served.Store(&served)
	return nil
}
