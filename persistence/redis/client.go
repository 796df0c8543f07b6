package redis

import (
	"errors"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Timeouts a URL does not set: a dead address fails the dial quickly, a
// frozen server fails a call before the callers' own deadlines pile up.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultIOTimeout   = 3 * time.Second
	// ClusterStateReload is how often a Redis Cluster client re-reads the
	// slot map, which bounds how long it keeps sending to a master that
	// died after its replica was promoted.
	ClusterStateReload = time.Second
)

// IsClusterURL reports whether raw is go-redis's Redis Cluster URL form: a
// redis:// or rediss:// URL with at least one addr= parameter, as in
// redis://h1:p1?addr=h2:p2&addr=h3:p3 (every address is a seed node).
func IsClusterURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return false
	}
	return u.Query().Has("addr")
}

// NewClient returns a client for a redis:// or rediss:// URL: a
// *goredis.ClusterClient for the cluster form (IsClusterURL), else a
// *goredis.Client (see goredis.ParseURL and goredis.ParseClusterURL for
// the options a URL may carry). Timeouts the URL leaves unset are
// DefaultDialTimeout and DefaultIOTimeout, and every call honours its
// context's deadline. Its errors never quote the URL, which may hold a
// password.
func NewClient(raw string) (goredis.UniversalClient, error) {
	if IsClusterURL(raw) {
		opt, err := parseClusterURL(raw)
		if err != nil {
			return nil, err
		}
		opt.DialTimeout = orDefault(opt.DialTimeout, DefaultDialTimeout)
		opt.ReadTimeout = orDefault(opt.ReadTimeout, DefaultIOTimeout)
		opt.WriteTimeout = orDefault(opt.WriteTimeout, DefaultIOTimeout)
		// As below; the cluster client passes it to every node's client.
		opt.ContextTimeoutEnabled = true
		// go-redis re-reads the slot map on MOVED/ASK, but a master that
		// died answers nothing, so by default its slots kept pointing at
		// the dead address until the 60 s periodic reload: its share of
		// the journal was unavailable for a minute after its replica had
		// taken over (TestNodeSurvivesRedisClusterMasterKill). A reload
		// is one CLUSTER SHARDS per second per client.
		if opt.ClusterStateReloadInterval == 0 {
			opt.ClusterStateReloadInterval = ClusterStateReload
		}
		return goredis.NewClusterClient(opt), nil
	}
	opt, err := goredis.ParseURL(raw)
	if err != nil {
		return nil, redactParseError(err)
	}
	opt.DialTimeout = orDefault(opt.DialTimeout, DefaultDialTimeout)
	opt.ReadTimeout = orDefault(opt.ReadTimeout, DefaultIOTimeout)
	opt.WriteTimeout = orDefault(opt.WriteTimeout, DefaultIOTimeout)
	// Honour the caller's deadline (grains' store timeout, /ready's short
	// probe): by default go-redis ignores it for reads and writes and
	// waits ReadTimeout per try, so a frozen server held a call for 6 s+.
	opt.ContextTimeoutEnabled = true
	return goredis.NewClient(opt), nil
}

// parseClusterURL is goredis.ParseClusterURL refusing a database other
// than 0, which Redis Cluster does not have and go-redis would ignore.
func parseClusterURL(raw string) (*goredis.ClusterOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, redactParseError(err)
	}
	switch u.Path {
	case "", "/", "/0":
	default:
		return nil, errors.New("a Redis Cluster URL cannot name a database (cluster has only db 0)")
	}
	opt, err := goredis.ParseClusterURL(raw)
	if err != nil {
		return nil, redactParseError(err)
	}
	return opt, nil
}

// redactParseError drops a *url.Error, which quotes the URL, password
// included; go-redis's own errors name only the offending part.
func redactParseError(err error) error {
	if uerr := (*url.Error)(nil); errors.As(err, &uerr) {
		return errors.New("malformed URL")
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
