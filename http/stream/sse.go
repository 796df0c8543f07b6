package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"granary/persistence"
)

// Render turns a journal event into an SSE event type and JSON data.
type Render func(e persistence.Event) (eventType string, data []byte, err error)

// Options tune a stream.
type Options struct {
	// Buffer is how many live items a client may lag behind before it is
	// disconnected with a final "overflow" event telling where to resume.
	Buffer int
	// Heartbeat is the interval of ": ping" comments that keep proxies
	// from closing an idle stream.
	Heartbeat time.Duration
	// ReadBatch bounds one journal read while catching up.
	ReadBatch int
	// WriteTimeout bounds each write (an event, a heartbeat): a client
	// that stops reading fills the connection's buffers, the next write
	// blocks, and the stream ends when it has not gone through within
	// WriteTimeout, so a client that never reads cannot hold a stream
	// (and its share of the gateway's capacity) for ever. 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is the contract's "a client that does not read its
// stream for 30 s is disconnected".
const DefaultWriteTimeout = 30 * time.Second

// DefaultOptions are sensible for browsers and scripts alike.
func DefaultOptions() Options {
	// The heartbeat is well inside WriteTimeout, and a write that goes
	// through renews the deadline: an idle client that reads is never cut.
	return Options{Buffer: 1024, Heartbeat: 15 * time.Second, ReadBatch: 500, WriteTimeout: DefaultWriteTimeout}
}

// WriteHeaders sends a stream's status and headers: what HEAD on a stream
// answers, and what a stream sends at once, before any event.
func WriteHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

type writer struct {
	w       io.Writer
	rc      *http.ResponseController
	timeout time.Duration
}

func newWriter(w http.ResponseWriter, opt Options) (*writer, error) {
	sw := &writer{w: w, rc: http.NewResponseController(w), timeout: opt.WriteTimeout}
	if sw.timeout <= 0 {
		sw.timeout = DefaultWriteTimeout
	}
	// A stream outlives the server's WriteTimeout by design; each write
	// gets a deadline of its own instead (see Options.WriteTimeout).
	if err := sw.deadline(); err != nil {
		return nil, err
	}
	WriteHeaders(w)
	return sw, sw.flush()
}

// deadline gives the next write WriteTimeout to go through.
func (s *writer) deadline() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("stream write deadline: %w", err)
	}
	return nil
}

func (s *writer) flush() error { return s.rc.Flush() }

// write sends b at once, within the write deadline.
func (s *writer) write(b string) error {
	if err := s.deadline(); err != nil {
		return err
	}
	if _, err := io.WriteString(s.w, b); err != nil {
		return fmt.Errorf("stream write: %w", err)
	}
	if err := s.flush(); err != nil {
		return fmt.Errorf("stream flush: %w", err)
	}
	return nil
}

func (s *writer) send(id, event string, data []byte) error {
	var b strings.Builder
	if id != "" {
		fmt.Fprintf(&b, "id: %s\n", id)
	}
	fmt.Fprintf(&b, "event: %s\n", event)
	for _, line := range strings.Split(string(data), "\n") {
		fmt.Fprintf(&b, "data: %s\n", line)
	}
	b.WriteString("\n")
	return s.write(b.String())
}

func (s *writer) ping() error { return s.write(": ping\n\n") }

// overflow is the last event of a stream whose client fell behind.
func (s *writer) overflow(lastID string) error {
	data, _ := json.Marshal(map[string]string{
		"reason":      "client fell too far behind; reconnect with Last-Event-ID to resume",
		"last_id":     lastID,
		"resume_with": "Last-Event-ID: " + lastID,
	})
	return s.send("", "overflow", data)
}

// ServeStream streams one journal stream to w: every event after version
// after (from the journal), then live ones as they are written, each with
// id = version, without gaps or duplicates across the switch. It returns
// when ctx ends or the client cannot keep up.
func ServeStream(ctx context.Context, w http.ResponseWriter, j persistence.Journal, t *Tailer, stream string, after uint64, render Render, opt Options) error {
	// Subscribe before reading history so nothing written meanwhile is
	// missed; what arrives twice is skipped by version.
	sub, err := t.Subscribe(func(e *persistence.Event) bool { return e.Stream == stream }, false, opt.Buffer)
	if err != nil {
		return err
	}
	defer t.Unsubscribe(sub)
	sw, err := newWriter(w, opt)
	if err != nil {
		return err
	}
	last := after
	catchUp := func(upTo uint64) error {
		for last < upTo {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			events, err := j.ReadStream(rctx, stream, last, opt.ReadBatch)
			cancel()
			if err != nil {
				return fmt.Errorf("read %s after %d: %w", stream, last, err)
			}
			if len(events) == 0 {
				return nil
			}
			for _, e := range events {
				if err := sendEvent(sw, strconv.FormatUint(e.Version, 10), e, render); err != nil {
					return err
				}
				last = e.Version
			}
		}
		return nil
	}
	if err := catchUp(^uint64(0)); err != nil {
		return err
	}
	beat := time.NewTicker(opt.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if err := sw.ping(); err != nil {
				return err
			}
		case it, ok := <-sub.C:
			if !ok {
				return sw.overflow(strconv.FormatUint(last, 10))
			}
			e := it.Event
			if e.Version <= last {
				continue
			}
			if e.Version > last+1 { // a gap the tailer cannot fill: read it
				if err := catchUp(e.Version - 1); err != nil {
					return err
				}
			}
			if err := sendEvent(sw, strconv.FormatUint(e.Version, 10), *e, render); err != nil {
				return err
			}
			last = e.Version
		}
	}
}

// GlobalID is an event's id on the global stream: its position, prefixed
// with its partition when the journal has several.
func GlobalID(e persistence.Event, partitions int) string {
	if partitions <= 1 {
		return strconv.FormatUint(e.Position, 10)
	}
	return fmt.Sprintf("%d.%d", e.Partition, e.Position)
}

// ParseGlobalID reads a Last-Event-ID of the global stream.
func ParseGlobalID(id string, partitions int) (partition int, position uint64, err error) {
	p, pos := "0", id
	if partitions > 1 {
		var ok bool
		if p, pos, ok = strings.Cut(id, "."); !ok {
			return 0, 0, fmt.Errorf("Last-Event-ID %q: want <partition>.<position>", id)
		}
	}
	pn, err1 := strconv.Atoi(p)
	position, err2 := strconv.ParseUint(pos, 10, 64)
	if err1 != nil || err2 != nil || pn < 0 || pn >= max(partitions, 1) {
		return 0, 0, fmt.Errorf("Last-Event-ID %q is not an id of this stream", id)
	}
	return pn, position, nil
}

// ServeAll streams every journal event and topology change to w. Each
// partition starts after from[p] (from the journal), then goes live; with
// from nil, it starts with the last recent events of each partition.
func ServeAll(ctx context.Context, w http.ResponseWriter, j persistence.Journal, t *Tailer, from map[int]uint64, recent uint64, render Render, opt Options) error {
	sub, err := t.Subscribe(nil, true, opt.Buffer)
	if err != nil {
		return err
	}
	defer t.Unsubscribe(sub)
	sw, err := newWriter(w, opt)
	if err != nil {
		return err
	}
	parts := j.Partitions()
	last := make([]uint64, parts)
	lastID := ""
	for p := range last {
		if pos, ok := from[p]; ok {
			last[p] = pos
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		head, err := j.Head(hctx, p)
		cancel()
		if err != nil {
			return fmt.Errorf("head of partition %d: %w", p, err)
		}
		if from == nil && head > recent {
			last[p] = head - recent
		} else if from == nil {
			last[p] = 0
		} else {
			last[p] = head // a partition the client's id does not name: live only
		}
	}
	catchUp := func(p int, upTo uint64) error {
		for last[p] < upTo {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			events, err := j.ReadPartition(rctx, p, last[p], opt.ReadBatch)
			cancel()
			if err != nil {
				return fmt.Errorf("read partition %d after %d: %w", p, last[p], err)
			}
			if len(events) == 0 {
				return nil
			}
			for _, e := range events {
				lastID = GlobalID(e, parts)
				if err := sendEvent(sw, lastID, e, render); err != nil {
					return err
				}
				last[p] = e.Position
			}
		}
		return nil
	}
	for p := range last {
		if err := catchUp(p, ^uint64(0)); err != nil {
			return err
		}
	}
	beat := time.NewTicker(opt.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if err := sw.ping(); err != nil {
				return err
			}
		case it, ok := <-sub.C:
			if !ok {
				return sw.overflow(lastID)
			}
			if it.Topology != nil {
				data, _ := json.Marshal(it.Topology)
				if err := sw.send("", "topology", data); err != nil {
					return err
				}
				continue
			}
			e := it.Event
			p := e.Partition
			if e.Position <= last[p] {
				continue
			}
			if e.Position > last[p]+1 {
				if err := catchUp(p, e.Position-1); err != nil {
					return err
				}
			}
			lastID = GlobalID(*e, parts)
			if err := sendEvent(sw, lastID, *e, render); err != nil {
				return err
			}
			last[p] = e.Position
		}
	}
}

func sendEvent(sw *writer, id string, e persistence.Event, render Render) error {
	typ, data, err := render(e)
	if err != nil {
		// An event this member cannot render (written by a newer release)
		// is announced rather than skipped silently.
		typ, data = "unreadable", []byte(fmt.Sprintf(`{"stream":%q,"version":%d}`, e.Stream, e.Version))
	}
	return sw.send(id, typ, data)
}
