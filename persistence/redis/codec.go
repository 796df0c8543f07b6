package redis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"granary/persistence"
)

// An event body is a format byte, protobuf wire-format fields in ascending
// order, and a CRC-32C of all that as 4 little-endian bytes. The checksum
// makes truncation and damaged bytes detectable even where the fields alone
// would still parse. The position is not part of the body: Go does not know
// it when encoding, and the storage layout implies it.
const formatV1 = 1

const crcSize = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	fieldStream  protowire.Number = 1 // bytes, required
	fieldVersion protowire.Number = 2 // varint, required, >= 1
	fieldType    protowire.Number = 3 // bytes, omitted when empty
	fieldData    protowire.Number = 4 // bytes, omitted when empty
	fieldSeconds protowire.Number = 5 // zigzag varint, with fieldNanos or neither
	fieldNanos   protowire.Number = 6 // varint < 1e9; both omitted for the zero time
)

// body is a decoded event body.
type body struct {
	stream  string
	version uint64
	typ     string
	data    []byte
	at      time.Time
}

func encodeEvent(stream string, version uint64, e persistence.EventData) []byte {
	var secs, nanos uint64
	hasTime := !e.OccurredAt.IsZero()
	size := 1 + protowire.SizeTag(fieldStream) + protowire.SizeBytes(len(stream)) +
		protowire.SizeTag(fieldVersion) + protowire.SizeVarint(version)
	if e.Type != "" {
		size += protowire.SizeTag(fieldType) + protowire.SizeBytes(len(e.Type))
	}
	if len(e.Data) > 0 {
		size += protowire.SizeTag(fieldData) + protowire.SizeBytes(len(e.Data))
	}
	if hasTime {
		// Seconds and nanoseconds rather than UnixNano: every time.Time
		// fits, not only those between 1678 and 2262.
		secs = protowire.EncodeZigZag(e.OccurredAt.Unix())
		nanos = uint64(e.OccurredAt.Nanosecond())
		size += protowire.SizeTag(fieldSeconds) + protowire.SizeVarint(secs) +
			protowire.SizeTag(fieldNanos) + protowire.SizeVarint(nanos)
	}

	b := make([]byte, 0, size+crcSize)
	b = append(b, formatV1)
	b = protowire.AppendTag(b, fieldStream, protowire.BytesType)
	b = protowire.AppendString(b, stream)
	b = protowire.AppendTag(b, fieldVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, version)
	if e.Type != "" {
		b = protowire.AppendTag(b, fieldType, protowire.BytesType)
		b = protowire.AppendString(b, e.Type)
	}
	if len(e.Data) > 0 {
		b = protowire.AppendTag(b, fieldData, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Data)
	}
	if hasTime {
		b = protowire.AppendTag(b, fieldSeconds, protowire.VarintType)
		b = protowire.AppendVarint(b, secs)
		b = protowire.AppendTag(b, fieldNanos, protowire.VarintType)
		b = protowire.AppendVarint(b, nanos)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeEvent parses a body strictly: a matching checksum, a known format,
// known fields in ascending order, each at most once, with the right wire
// types, required fields present and values in range. Anything else is an
// error; the caller wraps it in persistence.ErrCorrupt with the key.
func decodeEvent(b []byte) (body, error) {
	var out body
	if len(b) < 1+crcSize {
		return out, fmt.Errorf("event body of %d bytes is too short", len(b))
	}
	b, sum := b[:len(b)-crcSize], binary.LittleEndian.Uint32(b[len(b)-crcSize:])
	if crc32.Checksum(b, castagnoli) != sum {
		return out, errors.New("event body checksum mismatch")
	}
	if b[0] != formatV1 {
		return out, fmt.Errorf("unknown event format %d", b[0])
	}
	b = b[1:]
	var (
		last            protowire.Number
		secs, nanos     uint64
		hasSecs, hasNan bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out, fmt.Errorf("field tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num <= last {
			return out, fmt.Errorf("field %d out of order or repeated", num)
		}
		last = num
		want := protowire.VarintType
		if num == fieldStream || num == fieldType || num == fieldData {
			want = protowire.BytesType
		}
		if num > fieldNanos {
			return out, fmt.Errorf("unknown field %d", num)
		}
		if typ != want {
			return out, fmt.Errorf("field %d has wire type %d, want %d", num, typ, want)
		}
		if want == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return out, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			switch num {
			case fieldStream:
				out.stream = string(v)
			case fieldType:
				out.typ = string(v)
			case fieldData:
				out.data = v[:len(v):len(v)]
			}
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return out, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case fieldVersion:
			out.version = v
		case fieldSeconds:
			secs, hasSecs = v, true
		case fieldNanos:
			nanos, hasNan = v, true
		}
	}
	switch {
	case out.stream == "":
		return out, errors.New("missing stream name")
	case out.version == 0:
		return out, errors.New("missing version")
	case hasSecs != hasNan:
		return out, errors.New("incomplete timestamp")
	case nanos >= uint64(time.Second):
		return out, fmt.Errorf("timestamp nanoseconds %d out of range", nanos)
	}
	if hasSecs {
		out.at = time.Unix(protowire.DecodeZigZag(secs), int64(nanos)).UTC()
	}
	return out, nil
}
