package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"granary/http/idempotency"
	"granary/messages"
)

// bindJSON decodes the request body into dst. An empty body reads as {}
// (so optional bodies may be left out); a non-empty one must be declared
// application/json, fit the body limit, and be exactly one JSON value whose
// fields have the right types.
func (g *Gateway) bindJSON(c echo.Context, dst any) error {
	req := c.Request()
	body, held := idempotency.HeldBody(req)
	var err error
	if !held {
		body, err = io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, g.cfg.BodyLimit))
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return messages.Fail(messages.CodePayloadTooLarge, "body is larger than %d bytes", g.cfg.BodyLimit)
		}
		return messages.Fail(messages.CodeInvalidJSON, "could not read body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	} else if !isJSONMediaType(req.Header.Get(echo.HeaderContentType)) {
		return messages.Fail(messages.CodeUnsupportedMediaType, "body must be application/json, got %q", req.Header.Get(echo.HeaderContentType))
	}
	// Unmarshal, not a Decoder: it works on the bytes in place (a Decoder
	// copies them into a buffer of its own) and refuses anything after
	// the first value as a syntax error.
	if err := json.Unmarshal(body, dst); err != nil {
		return messages.Fail(messages.CodeInvalidJSON, "%s", describeJSONError(err))
	}
	return nil
}

func isJSONMediaType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

func describeJSONError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			return "body must be a JSON object"
		}
		return field + ": expected " + typeErr.Type.String() + ", got JSON " + typeErr.Value
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		// json.Unmarshal's words for a second value, or anything else,
		// after the first.
		if strings.HasSuffix(syntaxErr.Error(), "after top-level value") {
			return "body must hold exactly one JSON value"
		}
		return "malformed JSON: " + syntaxErr.Error()
	}
	return "malformed JSON: " + err.Error()
}
