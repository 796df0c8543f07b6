package problem

import (
	"encoding/json"
	"fmt"
)

// extended is an error whose problem body carries one extension member
// (RFC 9457 §3.2) besides the standard ones.
type extended struct {
	err   error
	name  string
	value any
}

func (e *extended) Error() string { return e.err.Error() }
func (e *extended) Unwrap() error { return e.err }

// With returns err rendered by Handler with the extension member name set
// to value (a JSON-marshalable value), e.g. the saga a saga_failed answer
// is about. name must not be one of Problem's own members.
func With(err error, name string, value any) error {
	return &extended{err: err, name: name, value: value}
}

// withMember appends the member to a marshalled Problem object.
func withMember(body []byte, e *extended) ([]byte, error) {
	name, err := json.Marshal(e.name)
	if err != nil {
		return nil, fmt.Errorf("problem member name: %w", err)
	}
	value, err := json.Marshal(e.value)
	if err != nil {
		return nil, fmt.Errorf("problem member %s: %w", e.name, err)
	}
	out := make([]byte, 0, len(body)+len(name)+len(value)+2)
	out = append(out, body[:len(body)-1]...) // without the closing brace
	out = append(out, ',')
	out = append(out, name...)
	out = append(out, ':')
	out = append(out, value...)
	return append(out, '}'), nil
}
