package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"

	"granary/messages"
)

// maxCursorLen bounds what is decoded: a cursor holds a position (a
// partition and document key, or a time and a saga's kind/id) and a short
// hash.
const maxCursorLen = 1024

// filterHash names a listing's filter in a cursor without spelling it out:
// resuming under another filter would skip or repeat items, so a cursor
// carries the hash of the filter it was made for and is refused under any
// other.
func filterHash(filter string) string {
	sum := sha256.Sum256([]byte(filter))
	return hex.EncodeToString(sum[:8])
}

// encodeCursor makes the opaque cursor of a position (a struct of plain
// fields, which always marshals).
func encodeCursor(pos any) string {
	raw, _ := json.Marshal(pos)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// errBadCursor is the contract's answer to a malformed or foreign cursor.
func errBadCursor() error {
	return messages.Fail(messages.CodeValidationFailed, "cursor: not a cursor of this listing; start without one")
}

// decodeCursor reads raw into pos, exactly (no unknown field, nothing
// after it); the caller then checks the fields. Anything else is
// errBadCursor.
func decodeCursor(raw string, pos any) error {
	if len(raw) > maxCursorLen {
		return errBadCursor()
	}
	data, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return errBadCursor()
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(pos); err != nil || dec.More() {
		return errBadCursor()
	}
	return nil
}
