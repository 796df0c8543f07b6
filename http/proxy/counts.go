package proxy

import (
	"sync"
	"sync/atomic"
)

// Counts tracks requests in flight per instance. Add is called with +1 when a
// request is sent and -1 when it is done; Total is what least_connections
// compares. Implementations are safe for concurrent use.
type Counts interface {
	Add(instanceID string, delta int64)
	Total(instanceID string) int64
}

// forgetter is implemented by Counts that keep per-instance state, so that
// Proxy.Forget can drop it too.
type forgetter interface {
	Forget(instanceID string)
}

// LocalCounts counts only this gateway's requests.
type LocalCounts struct {
	mu sync.RWMutex
	m  map[string]*atomic.Int64
}

var _ Counts = (*LocalCounts)(nil)

// NewLocalCounts returns counts that see only this process.
func NewLocalCounts() Counts { return &LocalCounts{m: map[string]*atomic.Int64{}} }

// Add changes the in-flight count of instanceID by delta.
func (c *LocalCounts) Add(instanceID string, delta int64) {
	c.mu.RLock()
	n := c.m[instanceID]
	c.mu.RUnlock()
	if n == nil {
		c.mu.Lock()
		if n = c.m[instanceID]; n == nil {
			n = new(atomic.Int64)
			c.m[instanceID] = n
		}
		c.mu.Unlock()
	}
	n.Add(delta)
}

// Total is the in-flight count of instanceID.
func (c *LocalCounts) Total(instanceID string) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if n := c.m[instanceID]; n != nil {
		return n.Load()
	}
	return 0
}

// Forget drops instanceID's counter; the registry removed it.
func (c *LocalCounts) Forget(instanceID string) {
	c.mu.Lock()
	delete(c.m, instanceID)
	c.mu.Unlock()
}
