package redis

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"granary/persistence"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, e := range []persistence.EventData{
		{},
		{Type: "t", Data: []byte{0, 1, 2}, OccurredAt: time.Unix(-5, 999999999)},
		{Type: "x", OccurredAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		{Data: bytes.Repeat([]byte{0xff}, 300), OccurredAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		b := encodeEvent("stream", 42, e)
		got, err := decodeEvent(b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", e, err)
		}
		if got.stream != "stream" || got.version != 42 || got.typ != e.Type || !bytes.Equal(got.data, e.Data) || !got.at.Equal(e.OccurredAt) {
			t.Fatalf("decode(encode(%+v)) = %+v", e, got)
		}
		// The capacity is capped so appending to Data cannot touch
		// whatever follows it in the body.
		if cap(got.data) != len(got.data) {
			t.Fatalf("data capacity %d exceeds its length %d", cap(got.data), len(got.data))
		}
	}
}

// TestDecodeRejectsDamage: every truncation and a set of hand-made bodies
// must be errors, not panics and not events.
func TestDecodeRejectsDamage(t *testing.T) {
	valid := encodeEvent("s", 1, persistence.EventData{Type: "t", Data: []byte("data"), OccurredAt: time.Unix(1, 2)})
	for n := range len(valid) {
		if _, err := decodeEvent(valid[:n]); err == nil {
			t.Errorf("truncated to %d bytes: decoded", n)
		}
	}
	if _, err := decodeEvent(append([]byte(nil), valid[:len(valid)-1]...)); err == nil {
		t.Errorf("checksum cut: decoded")
	}
	flipped := append([]byte(nil), valid...)
	flipped[len(flipped)/2] ^= 0x10
	if _, err := decodeEvent(flipped); err == nil {
		t.Errorf("flipped bit: decoded")
	}
	if _, err := decodeEvent(seal(nil)); err == nil {
		t.Errorf("empty body: decoded")
	}
	// The rest carry a valid checksum, so the field checks must catch them.
	for name, b := range map[string][]byte{
		"unknown format":    {2, 0x0a, 1, 's', 0x10, 1},
		"no fields":         {formatV1},
		"no version":        {formatV1, 0x0a, 1, 's'},
		"no stream":         {formatV1, 0x10, 1},
		"version zero":      {formatV1, 0x0a, 1, 's', 0x10, 0},
		"repeated field":    {formatV1, 0x0a, 1, 's', 0x0a, 1, 't', 0x10, 1},
		"out of order":      {formatV1, 0x10, 1, 0x0a, 1, 's'},
		"wrong wire type":   {formatV1, 0x08, 1, 0x10, 1},
		"unknown field":     {formatV1, 0x0a, 1, 's', 0x10, 1, 0x38, 1},
		"seconds only":      {formatV1, 0x0a, 1, 's', 0x10, 1, 0x28, 2},
		"nanos only":        {formatV1, 0x0a, 1, 's', 0x10, 1, 0x30, 2},
		"nanos too large":   {formatV1, 0x0a, 1, 's', 0x10, 1, 0x28, 2, 0x30, 0x80, 0x94, 0xeb, 0xdc, 0x03},
		"length past end":   {formatV1, 0x0a, 9, 's'},
		"field number zero": {formatV1, 0x02, 1, 's'},
	} {
		if ev, err := decodeEvent(seal(b)); err == nil {
			t.Errorf("%s: decoded %+v", name, ev)
		}
	}
	if _, err := decodeEvent(seal([]byte{formatV1, 0x0a, 1, 's', 0x10, 1})); err != nil {
		t.Fatalf("minimal body: %v", err)
	}
}

// seal appends the checksum encodeEvent would.
func seal(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeEvent("s", 1, persistence.EventData{Type: "t", Data: []byte("d"), OccurredAt: time.Unix(3, 4)}))
	f.Add(encodeEvent("stream", 1<<40, persistence.EventData{}))
	f.Add(seal([]byte{formatV1, 0x0a, 1, 's', 0x10, 1}))
	f.Add(seal([]byte{formatV1, 0x0a, 1, 's', 0x10, 1, 0x28, 2, 0x30}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvent(b)
		if err == nil && (ev.stream == "" || ev.version == 0) {
			t.Fatalf("decoded an event without identity: %+v", ev)
		}
	})
}

func TestKeysShareThePartitionHashTag(t *testing.T) {
	k := keys{prefix: "app"}
	for _, key := range []string{k.head(3), k.events(3), k.stream(3, "a{b}"), k.snapshot(3, "}{")} {
		// Redis Cluster hashes the text between the first '{' and the
		// first '}' after it.
		open := bytes.IndexByte([]byte(key), '{')
		end := bytes.IndexByte([]byte(key[open:]), '}')
		if tag := key[open+1 : open+end]; tag != "p3" {
			t.Errorf("key %q hashes on %q, want p3", key, tag)
		}
	}
	if k.stream(0, "x") == k.snapshot(0, "x") || k.stream(0, "nap:x") == k.snapshot(0, "x") {
		t.Fatalf("stream and snapshot keys collide")
	}
}
