package idempotency

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/internal/redispipe"
)

var _ Store = (*RedisStore)(nil)

var (
	//go:embed complete.lua
	completeLua    string
	completeScript = goredis.NewScript(completeLua)
	//go:embed release.lua
	releaseLua    string
	releaseScript = goredis.NewScript(releaseLua)
)

// RedisStore keeps records in Redis, one string key per record with the
// record's TTL, so every gateway sees them and they outlive the gateway
// that wrote them. Each operation is atomic: a claim is one SET … NX GET
// (Redis 7.0 or later), completion and release are Lua scripts.
//
// Values: "P|<token>|<fingerprint>" while pending,
// "R|<fingerprint>|<status>|<header bytes>|<headers><body>" once final
// (encodeResponse); "D|<fingerprint>|<response JSON>" records, which
// earlier gateways wrote, are still read.
type RedisStore struct {
	client goredis.UniversalClient
	// pipe, when set, sends the scripts of all requests in pipelines (see
	// NewPipelinedRedisStore); nil, or closed, they go to client.
	pipe   *redispipe.Pipeliner
	prefix string
}

// NewRedisStore keeps records under "<prefix>:idempotency:<key>"; the
// caller keeps owning client. Each operation is a round trip of its own.
func NewRedisStore(client goredis.UniversalClient, prefix string) (*RedisStore, error) {
	if client == nil {
		return nil, errors.New("idempotency: nil Redis client")
	}
	return &RedisStore{client: client, prefix: prefix + ":idempotency:"}, nil
}

// NewPipelinedRedisStore is NewRedisStore whose operations, from all
// requests, go to Redis together in pipelines (a redispipe.Pipeliner over
// client with its defaults): one round trip per batch rather than per
// operation. Every operation still honours its own ctx, so a frozen Redis
// fails it within its deadline. Close stops the pipeline's goroutines
// (started by the first operation).
func NewPipelinedRedisStore(client goredis.UniversalClient, prefix string) (*RedisStore, error) {
	s, err := NewRedisStore(client, prefix)
	if err != nil {
		return nil, err
	}
	if s.pipe, err = redispipe.New(client, redispipe.Options{Scripts: []string{completeLua, releaseLua}}); err != nil {
		return nil, fmt.Errorf("idempotency: %w", err)
	}
	return s, nil
}

// PipelineStats reports the pipelines a NewPipelinedRedisStore sent and
// the operations that went in them (0, 0 for one without a pipeline).
func (s *RedisStore) PipelineStats() (pipelines, calls uint64) {
	if s.pipe == nil {
		return 0, 0
	}
	st := s.pipe.Stats()
	return st.Pipelines, st.Calls
}

// Close stops the pipeline of a NewPipelinedRedisStore, cancelling the
// operations in flight (their outcome is unknown, as for a lost
// connection). The store stays usable: operations queued at Close and
// later ones go to Redis one round trip each, so requests a gateway is
// still draining when it closes its store finish. It never fails, and
// does nothing for a NewRedisStore.
func (s *RedisStore) Close() error {
	if s.pipe == nil {
		return nil
	}
	return s.pipe.Close()
}

// run runs script through the pipeline if there is one and it is open,
// else on the client.
func (s *RedisStore) run(ctx context.Context, script *goredis.Script, keys []string, args ...any) *goredis.Cmd {
	if s.pipe != nil {
		cmd := script.Run(ctx, s.pipe, keys, args...)
		if !errors.Is(cmd.Err(), redispipe.ErrClosed) {
			return cmd
		}
		// Refused unsent: the store was closed.
	}
	return script.Run(ctx, s.client, keys, args...)
}

// do sends a plain command through the pipeline if there is one and it
// is open, else on the client.
func (s *RedisStore) do(ctx context.Context, key string, args ...any) *goredis.Cmd {
	if s.pipe != nil {
		cmd := s.pipe.Do(ctx, []string{key}, args...)
		if !errors.Is(cmd.Err(), redispipe.ErrClosed) {
			return cmd
		}
	}
	return s.client.Do(ctx, args...)
}

// Claim implements Store. It is one SET … NX GET rather than a script:
// every keyed request claims, and a script call costs Redis several
// times the SET it would wrap (issue 10). Only a claim that finds a record
// in the way asks for that record's TTL, in a second command; should the
// record expire between the two (or that command fail), it is still the
// record that was in the way, with no time left.
func (s *RedisStore) Claim(ctx context.Context, key, fingerprint string, pendingTTL time.Duration) (string, *Record, error) {
	rkey := s.prefix + key
	token := newToken()
	raw, err := s.do(ctx, rkey, "SET", rkey, pendingPrefix(token)+fingerprint, "NX", "GET", "PX", pendingTTL.Milliseconds()).Text()
	switch {
	case errors.Is(err, goredis.Nil):
		return token, nil, nil
	case err != nil:
		return "", nil, fmt.Errorf("claim idempotency key %s: %w", rkey, err)
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return "", nil, fmt.Errorf("claim idempotency key %s: %w", rkey, err)
	}
	// The record is read; its TTL is only a hint, so a failure to read it
	// (the store's time used up by the SET) leaves no time rather than
	// failing a claim that has its answer.
	if pttl, err := s.do(ctx, rkey, "PTTL", rkey).Int64(); err == nil {
		rec.ExpiresIn = time.Duration(max(pttl, 0)) * time.Millisecond
	}
	return "", rec, nil
}

// Complete implements Store.
func (s *RedisStore) Complete(ctx context.Context, key, token string, resp Response, ttl time.Duration) error {
	rkey := s.prefix + key
	body, err := encodeResponse(resp)
	if err != nil {
		return fmt.Errorf("complete idempotency key %s: %w", rkey, err)
	}
	n, err := s.run(ctx, completeScript, []string{rkey}, pendingPrefix(token), body, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("complete idempotency key %s: %w", rkey, err)
	}
	if n == 0 {
		return ErrNotClaimed
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key, token string) error {
	rkey := s.prefix + key
	if err := s.run(ctx, releaseScript, []string{rkey}, pendingPrefix(token)).Err(); err != nil {
		return fmt.Errorf("release idempotency key %s: %w", rkey, err)
	}
	return nil
}

func pendingPrefix(token string) string { return "P|" + token + "|" }

// ErrCorruptRecord: a key under the store's prefix holds something this
// store did not write.
var ErrCorruptRecord = errors.New("idempotency record unreadable")

func decodeRecord(raw string) (*Record, error) {
	kind, rest, ok := strings.Cut(raw, "|")
	if !ok {
		return nil, ErrCorruptRecord
	}
	switch kind {
	case "P":
		_, fp, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, ErrCorruptRecord
		}
		return &Record{Fingerprint: fp}, nil
	case "R":
		fp, body, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, ErrCorruptRecord
		}
		resp, err := decodeResponse(body)
		if err != nil {
			return nil, err
		}
		return &Record{Fingerprint: fp, Response: resp}, nil
	case "D":
		// The JSON form gateways before December 2026 wrote (its body in
		// base64); such records live out their 24 h.
		fp, body, ok := strings.Cut(rest, "|")
		if !ok {
			return nil, ErrCorruptRecord
		}
		var resp Response
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
		}
		return &Record{Fingerprint: fp, Response: &resp}, nil
	}
	return nil, ErrCorruptRecord
}

// encodeResponse is a kept answer as an "R" record holds it after its
// fingerprint: "<status>|<header bytes>|<headers><body>", each header one
// "Name:value\n" line, the body raw. Not JSON: that cost every keyed
// request an encoding with reflection and a base64 body a third larger
// in Redis (issue 10).
func encodeResponse(r Response) (string, error) {
	if r.Status < 100 || r.Status > 999 {
		return "", fmt.Errorf("encode response: status %d", r.Status)
	}
	hlen := 0
	for name, vs := range r.Header {
		for _, v := range vs {
			if strings.ContainsAny(name, ":\n") || strings.ContainsRune(v, '\n') {
				return "", fmt.Errorf("encode response: header %q: %q cannot be kept", name, v)
			}
			hlen += len(name) + len(v) + 2
		}
	}
	var b strings.Builder
	b.Grow(3 + 1 + 8 + 1 + hlen + len(r.Body))
	b.WriteString(strconv.Itoa(r.Status))
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(hlen))
	b.WriteByte('|')
	for name, vs := range r.Header {
		for _, v := range vs {
			b.WriteString(name)
			b.WriteByte(':')
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	b.Write(r.Body)
	return b.String(), nil
}

func decodeResponse(s string) (*Response, error) {
	status, rest, ok := strings.Cut(s, "|")
	if !ok {
		return nil, ErrCorruptRecord
	}
	hlenText, rest, ok := strings.Cut(rest, "|")
	if !ok {
		return nil, ErrCorruptRecord
	}
	code, err1 := strconv.Atoi(status)
	hlen, err2 := strconv.Atoi(hlenText)
	if err1 != nil || err2 != nil || !isDecimal(status) || !isDecimal(hlenText) || code < 100 || code > 999 ||
		hlen > len(rest) || (hlen > 0 && rest[hlen-1] != '\n') {
		return nil, ErrCorruptRecord
	}
	resp := &Response{Status: code}
	if hlen > 0 {
		resp.Header = map[string][]string{}
		for line := range strings.SplitSeq(rest[:hlen-1], "\n") {
			name, v, ok := strings.Cut(line, ":")
			if !ok || name == "" {
				return nil, ErrCorruptRecord
			}
			resp.Header[name] = append(resp.Header[name], v)
		}
	}
	if body := rest[hlen:]; body != "" {
		resp.Body = []byte(body)
	}
	return resp, nil
}

// isDecimal: digits only, no sign, no leading zero (as strconv.Itoa
// writes them); Atoi alone takes "+200" and "0200".
func isDecimal(s string) bool {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
