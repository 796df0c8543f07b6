package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"granary/internal/redispipe"
	"granary/internal/tracing"
	"granary/persistence"
)

// A long read is a series of moderate replies rather than one that stalls
// the server and balloons both processes' memory: a reply holds at most
// readChunk events, and stops after the event that brings it to
// replyBudget bytes (so it always holds at least one).
const (
	readChunk   = 1000
	replyBudget = 4 << 20
)

// maxExact is the largest count Redis Lua numbers (doubles) hold exactly;
// versions and positions beyond it cannot exist, so reads after it are empty.
const maxExact = 1 << 53

// journalSpan is built once: a variadic option per append would allocate.
var journalSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}

// Append implements persistence.Journal with append.lua. It runs under a
// span when ctx is traced (or an exporter is installed).
func (s *Store) Append(ctx context.Context, stream string, expectedVersion uint64, events []persistence.EventData, opts ...persistence.AppendOption) (_ persistence.AppendResult, err error) {
	ctx, span := tracing.Start(ctx, "journal.append", journalSpan...)
	if span.IsRecording() {
		span.SetAttributes(attribute.String("granary.stream", stream), attribute.Int("granary.events", len(events)),
			attribute.Int64("granary.expected_version", int64(expectedVersion)))
		defer func() {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}()
	}
	fail := func(err error) (persistence.AppendResult, error) {
		return persistence.AppendResult{}, fmt.Errorf("append %s@%d: %w", stream, expectedVersion, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if len(events) == 0 {
		return fail(fmt.Errorf("empty batch: %w", persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	if expectedVersion >= maxExact-uint64(len(events)) {
		// No stream gets there (see maxExact), so this is a conflict; Lua
		// could not compare such a version exactly, so answer it here.
		actual, err := s.StreamVersion(ctx, stream)
		if err != nil {
			return fail(err)
		}
		return persistence.AppendResult{}, &persistence.ConflictError{Stream: stream, Expected: expectedVersion, Actual: actual}
	}
	p := s.PartitionOf(stream)
	streamKey := s.keys.stream(p, stream)
	fence := persistence.FenceOf(opts)
	cmds, err := fence.CommandsOf(len(events))
	if err != nil {
		return fail(err)
	}
	args := make([]any, 0, 4+2*len(cmds)+len(events))
	args = append(args, strconv.FormatUint(expectedVersion, 10), unixMs(fence.NotAfter), persistence.AppliedHold.Milliseconds(), len(cmds))
	keys := make([]string, 0, 3+2*len(cmds))
	keys = append(keys, streamKey, s.keys.events(p), s.keys.head(p))
	for _, c := range cmds {
		args = append(args, c.Through, unixMs(c.NotAfter))
		keys = append(keys, s.keys.declined(p, stream, c.ID), s.keys.applied(p, stream, c.ID))
	}
	for i, e := range events {
		args = append(args, encodeEvent(stream, expectedVersion+uint64(i)+1, e))
	}

	reply, err := s.runAppend(ctx, stream, keys, args)
	if err != nil {
		return fail(classify(err, streamKey))
	}
	// command names command j (1-based) of the reply, if the script's j is sane.
	command := func(j int64) (int, bool) { return int(j - 1), j >= 1 && int(j) <= len(cmds) }
	switch {
	case len(reply) == 1 && reply[0] == 2:
		return fail(persistence.ErrExpired)
	case len(reply) == 2 && reply[0] == 2:
		if i, ok := command(reply[1]); ok {
			return fail(&persistence.FenceError{Stream: stream, Command: cmds[i].ID, Index: i, Err: persistence.ErrExpired})
		}
	case len(reply) == 2 && reply[0] == 3:
		if i, ok := command(reply[1]); ok {
			return fail(&persistence.FenceError{Stream: stream, Command: cmds[i].ID, Index: i, Err: persistence.ErrDeclined})
		}
	case len(reply) == 3 && reply[0] == 4 && reply[1] > 0:
		if i, ok := command(reply[2]); ok {
			return persistence.AppendResult{}, &persistence.DuplicateError{Stream: stream, Command: cmds[i].ID, Version: uint64(reply[1]), Index: i}
		}
	case len(reply) == 2 && reply[0] == 0 && reply[1] >= 0:
		return persistence.AppendResult{}, &persistence.ConflictError{Stream: stream, Expected: expectedVersion, Actual: uint64(reply[1])}
	case len(reply) == 3 && reply[0] == 1 && uint64(reply[1]) == expectedVersion+uint64(len(events)) && reply[2] > 0:
		return persistence.AppendResult{Version: uint64(reply[1]), Partition: p, FirstPosition: uint64(reply[2])}, nil
	}
	return fail(fmt.Errorf("unexpected script reply %v", reply))
}

// unixMs is t as the scripts take a time: Unix ms, 0 for none.
func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(1, t.UnixMilli())
}

// Decline implements persistence.Journal with decline.lua.
func (s *Store) Decline(ctx context.Context, stream string, version uint64, command string, until time.Time) error {
	fail := func(err error) error { return fmt.Errorf("decline %s on %s@%d: %w", command, stream, version, err) }
	ttl := time.Until(until).Milliseconds()
	switch {
	case stream == "" || command == "":
		return fail(fmt.Errorf("empty stream or command: %w", persistence.ErrInvalid))
	case ttl <= 0:
		return fail(fmt.Errorf("until %v is not in the future: %w", until, persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	if version >= maxExact {
		actual, err := s.StreamVersion(ctx, stream)
		if err != nil {
			return fail(err)
		}
		return &persistence.ConflictError{Stream: stream, Expected: version, Actual: actual}
	}
	p := s.PartitionOf(stream)
	streamKey := s.keys.stream(p, stream)
	reply, err := declineScript.Run(ctx, s.client, []string{streamKey, s.keys.declined(p, stream, command)},
		strconv.FormatUint(version, 10), until.UnixMilli()).Int64Slice()
	if err != nil {
		return fail(classify(err, streamKey))
	}
	switch {
	case len(reply) == 1 && reply[0] == 1:
		return nil
	case len(reply) == 2 && reply[0] == 0 && reply[1] >= 0:
		return &persistence.ConflictError{Stream: stream, Expected: version, Actual: uint64(reply[1])}
	default:
		return fail(fmt.Errorf("unexpected script reply %v", reply))
	}
}

// ReadStream implements persistence.Journal with read_stream.lua, chunk by
// chunk. Every entry is checked against where it was found: its position
// must exist and increase, its body must name this stream and the version
// its place in the list implies.
func (s *Store) ReadStream(ctx context.Context, stream string, afterVersion uint64, limit int) ([]persistence.Event, error) {
	fail := func(err error) ([]persistence.Event, error) {
		return nil, fmt.Errorf("read %s after %d: %w", stream, afterVersion, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	if afterVersion >= maxExact {
		return nil, nil
	}
	p := s.PartitionOf(stream)
	streamKey := s.keys.stream(p, stream)
	evKey := s.keys.events(p)

	var out []persistence.Event
	var lastPos uint64
	next := afterVersion // version of the last event read
	for {
		want := s.chunkSize(limit, len(out))
		if want == 0 {
			return out, nil
		}
		reply, err := readStreamScript.Run(ctx, s.client, []string{streamKey, evKey},
			next, next+uint64(want)-1, s.replyBudget).Slice()
		if err != nil {
			return fail(classify(err, streamKey))
		}
		if len(reply)%2 != 1 || len(reply) > 1+2*want {
			return fail(corrupt(streamKey, fmt.Errorf("script returned %d values for %d events", len(reply), want)))
		}
		total, ok := reply[0].(int64)
		if !ok || total < 0 {
			return fail(corrupt(streamKey, fmt.Errorf("script returned stream version %v", reply[0])))
		}
		if out, err = streamChunk(stream, p, streamKey, evKey, reply[1:], &next, &lastPos, out); err != nil {
			return fail(err)
		}
		if next >= uint64(total) {
			return out, nil
		}
		if len(reply) == 1 {
			// Not reachable through the scripts; guards against looping.
			return fail(fmt.Errorf("no progress reading after version %d of %d", next, total))
		}
	}
}

// streamChunk checks and decodes the (position, body) pairs of one reply
// of read_stream.lua or load_stream.lua, the events after version *next,
// and appends them to out. Every entry is checked against where it was
// found: its position must exist and increase past *lastPos, its body must
// name stream and the version its place in the list implies.
func streamChunk(stream string, p int, streamKey, evKey string, pairs []any, next, lastPos *uint64, out []persistence.Event) ([]persistence.Event, error) {
	for i := 0; i+1 < len(pairs); i += 2 {
		*next++
		pos, err := parseCount(pairs[i])
		if err != nil || pos <= *lastPos {
			return out, corrupt(streamKey, fmt.Errorf("version %d: bad position %q", *next, truncate(fmt.Sprint(pairs[i]))))
		}
		*lastPos = pos
		ev, err := decodeReply(pairs[i+1])
		if err != nil {
			return out, corrupt(evKey, fmt.Errorf("position %d (version %d of %s): %w", pos, *next, stream, err))
		}
		if ev.stream != stream || ev.version != *next {
			return out, corrupt(evKey, fmt.Errorf("position %d holds %s@%d, want %s@%d", pos, ev.stream, ev.version, stream, *next))
		}
		out = append(out, event(ev, p, pos))
	}
	return out, nil
}

// LoadStream implements persistence.StreamLoader with load_stream.lua: the
// snapshot and the first chunk in one round trip (an activation's load),
// then ReadStream for whatever is left.
func (s *Store) LoadStream(ctx context.Context, stream string, limit int) (persistence.Snapshot, bool, []persistence.Event, error) {
	fail := func(err error) (persistence.Snapshot, bool, []persistence.Event, error) {
		return persistence.Snapshot{}, false, nil, fmt.Errorf("load %s: %w", stream, err)
	}
	if stream == "" {
		return fail(fmt.Errorf("empty stream name: %w", persistence.ErrInvalid))
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	p := s.PartitionOf(stream)
	snapKey, streamKey, evKey := s.keys.snapshot(p, stream), s.keys.stream(p, stream), s.keys.events(p)
	want := s.chunkSize(limit, 0)
	reply, err := loadStreamScript.Run(ctx, s.client, []string{snapKey, streamKey, evKey}, want, s.replyBudget).Slice()
	if err != nil {
		return fail(classify(err, streamKey))
	}
	if len(reply) < 3 || len(reply)%2 != 1 || len(reply) > 3+2*want {
		return fail(corrupt(streamKey, fmt.Errorf("script returned %d values for %d events", len(reply), want)))
	}
	snap, ok, err := parseSnapshot(snapKey, reply[0], reply[1])
	if err != nil {
		return fail(err)
	}
	total, isInt := reply[2].(int64)
	if !isInt || total < 0 {
		return fail(corrupt(streamKey, fmt.Errorf("script returned stream version %v", reply[2])))
	}
	switch {
	case snap.Version > uint64(total):
		// SaveSnapshot refuses that: the stream lost events the snapshot
		// folded. A state loaded from it would answer reads the journal
		// contradicts.
		return fail(corrupt(streamKey, fmt.Errorf("stream at version %d behind its snapshot at %d", total, snap.Version)))
	case snap.Version >= maxExact:
		return snap, ok, nil, nil // as ReadStream after it: nothing
	}
	next, lastPos := snap.Version, uint64(0)
	events, err := streamChunk(stream, p, streamKey, evKey, reply[3:], &next, &lastPos, nil)
	if err != nil {
		return fail(err)
	}
	switch {
	case next >= uint64(total) || (limit > 0 && len(events) >= limit):
		return snap, ok, events, nil
	case len(reply) == 3:
		// Not reachable through the script; guards against looping.
		return fail(fmt.Errorf("no progress reading after version %d of %d", next, total))
	}
	rest := 0
	if limit > 0 {
		rest = limit - len(events)
	}
	more, err := s.ReadStream(ctx, stream, next, rest)
	if err != nil {
		return persistence.Snapshot{}, false, nil, err
	}
	return snap, ok, append(events, more...), nil
}

// StreamVersion implements persistence.Journal.
func (s *Store) StreamVersion(ctx context.Context, stream string) (uint64, error) {
	if stream == "" {
		return 0, fmt.Errorf("version of %s: empty stream name: %w", stream, persistence.ErrInvalid)
	}
	if err := s.usable(ctx); err != nil {
		return 0, fmt.Errorf("version of %s: %w", stream, err)
	}
	key := s.keys.stream(s.PartitionOf(stream), stream)
	var n int64
	var err error
	if s.gcOff {
		n, err = s.client.LLen(ctx, key).Result()
	} else {
		// Every read of an account asks this (freshen): through the
		// journal's pipelines it shares round trips with the others, and
		// it queues behind the stream's own appends.
		n, err = streamVersionScript.Run(ctx, s.pipe, []string{key}).Int64()
		if errors.Is(err, redispipe.ErrClosed) {
			err = persistence.ErrClosed
		}
	}
	if err != nil {
		return 0, fmt.Errorf("version of %s: %w", stream, classify(err, key))
	}
	return uint64(n), nil
}

// ReadPartition implements persistence.Journal with read_partition.lua,
// chunk by chunk. Each body must decode and belong to a stream of this
// partition.
func (s *Store) ReadPartition(ctx context.Context, partition int, afterPosition uint64, limit int) ([]persistence.Event, error) {
	fail := func(err error) ([]persistence.Event, error) {
		return nil, fmt.Errorf("read partition %d after %d: %w", partition, afterPosition, err)
	}
	if err := s.checkPartition(partition); err != nil {
		return fail(err)
	}
	if err := s.usable(ctx); err != nil {
		return fail(err)
	}
	if afterPosition >= maxExact {
		return nil, nil
	}
	headKey, evKey := s.keys.head(partition), s.keys.events(partition)

	var out []persistence.Event
	pos := afterPosition // position of the last event read
	for {
		want := s.chunkSize(limit, len(out))
		if want == 0 {
			return out, nil
		}
		reply, err := readPartitionScript.Run(ctx, s.client, []string{headKey, evKey}, pos, want, s.replyBudget).Slice()
		if err != nil {
			return fail(classify(err, headKey))
		}
		if len(reply) == 0 || len(reply) > 1+want {
			return fail(corrupt(evKey, fmt.Errorf("script returned %d values for %d events", len(reply), want)))
		}
		head, ok := reply[0].(int64)
		if !ok || head < 0 {
			return fail(corrupt(headKey, fmt.Errorf("script returned head %v", reply[0])))
		}
		for _, raw := range reply[1:] {
			pos++
			ev, err := decodeReply(raw)
			if err != nil {
				return fail(corrupt(evKey, fmt.Errorf("position %d: %w", pos, err)))
			}
			if p := s.PartitionOf(ev.stream); p != partition {
				return fail(corrupt(evKey, fmt.Errorf("position %d holds %s@%d of partition %d", pos, ev.stream, ev.version, p)))
			}
			out = append(out, event(ev, partition, pos))
		}
		if pos >= uint64(head) {
			return out, nil
		}
		if len(reply) == 1 {
			// Not reachable through the scripts; guards against looping.
			return fail(fmt.Errorf("no progress reading after position %d of %d", pos, head))
		}
	}
}

// Head implements persistence.Journal.
func (s *Store) Head(ctx context.Context, partition int) (uint64, error) {
	if err := s.checkPartition(partition); err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, err)
	}
	if err := s.usable(ctx); err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, err)
	}
	key := s.keys.head(partition)
	raw, err := s.client.Get(ctx, key).Result()
	if errors.Is(err, goredis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, classify(err, key))
	}
	n, err := parseCount(raw)
	if err != nil {
		return 0, fmt.Errorf("head of partition %d: %w", partition, corrupt(key, err))
	}
	return n, nil
}

// chunkSize is how many events to ask for next, given the caller's limit
// and how many were read already; 0 means done.
func (s *Store) chunkSize(limit, read int) int {
	if limit <= 0 {
		return s.readChunk
	}
	return min(limit-read, s.readChunk)
}

// parseCount accepts only what the scripts write: a bulk string holding a
// canonical decimal without sign or leading zeros.
func parseCount(v any) (uint64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("want a decimal string, got %T", v)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, fmt.Errorf("%q is not a canonical decimal", truncate(s))
	}
	return n, nil
}

func decodeReply(v any) (body, error) {
	switch b := v.(type) {
	case nil:
		return body{}, errors.New("event body missing")
	case string:
		return decodeEvent([]byte(b))
	default:
		return body{}, fmt.Errorf("event body is a %T", v)
	}
}

func event(b body, partition int, pos uint64) persistence.Event {
	return persistence.Event{
		Stream:     b.stream,
		Version:    b.version,
		Partition:  partition,
		Position:   pos,
		Type:       b.typ,
		Data:       b.data,
		OccurredAt: b.at,
	}
}

// truncate keeps error messages short when a key holds a large garbage value.
func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
