package idempotency

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestRecordEncoding(t *testing.T) {
	resp := Response{Status: 201, Header: map[string][]string{
		"Content-Type": {"application/json"},
		"Location":     {"http://127.0.0.1:8080/api/v1/accounts/a|b"},
		"Link":         {"<a>; rel=x", "<b>; rel=y"},
	}, Body: []byte("{\"id\":\"a|b\"}\n|binary\x00")}
	enc, err := encodeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord("R|fp1|" + enc)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Fingerprint != "fp1" || !reflect.DeepEqual(*rec.Response, resp) {
		t.Fatalf("decoded %q %+v, want fp1 %+v", rec.Fingerprint, rec.Response, resp)
	}
	// No headers, no body.
	enc, _ = encodeResponse(Response{Status: http.StatusNoContent})
	if rec, err := decodeRecord("R|fp|" + enc); err != nil || rec.Response.Status != 204 || rec.Response.Header != nil || rec.Response.Body != nil {
		t.Fatalf("empty answer: %+v, %v", rec, err)
	}
	// Records in the JSON form of earlier gateways still replay.
	rec, err = decodeRecord(`D|fp2|{"status":200,"header":{"Etag":["\"3\""]},"body":"eyJ2IjozfQ=="}`)
	if err != nil || rec.Fingerprint != "fp2" || rec.Response.Status != 200 || string(rec.Response.Body) != `{"v":3}` || rec.Response.Header["Etag"][0] != `"3"` {
		t.Fatalf("JSON record: %+v, %v", rec, err)
	}
	for _, bad := range []string{"R|fp", "R|fp|20|0|", "R|fp|abc|0|", "R|fp|200|9|short", "R|fp|200|x|", "R|fp|200|4|noco", "R|fp|200",
		"R|fp|200|5|a:bcdBODY", "R|fp|200|5|a:b\n\nX", "R|fp|+200|0|", "R|fp|0200|0|", "R|fp|200|-1|", "R|fp|200|04|a:b\n", "R|fp|200|3|:b\n"} {
		if _, err := decodeRecord(bad); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%q decoded: %v", bad, err)
		}
	}
	if _, err := encodeResponse(Response{Status: 200, Header: map[string][]string{"X": {"a\nb"}}}); err == nil {
		t.Error("a header value with a newline was encoded")
	}
}
