package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"testing"
)

// accountPageBody is the answer of GET /api/v1/accounts; items are kept
// raw to compare them with the summary route's bodies.
type accountPageBody struct {
	Accounts   []map[string]any `json:"accounts"`
	NextCursor *string          `json:"next_cursor"`
}

func (h *harness) accountPage(tok, query string) accountPageBody {
	h.t.Helper()
	r := h.do("GET", "/api/v1/accounts?"+query, tok, "")
	if r.status != http.StatusOK {
		h.t.Fatalf("GET /api/v1/accounts?%s: %s", query, r)
	}
	var page accountPageBody
	r.decode(h.t, &page)
	if page.Accounts == nil {
		h.t.Fatalf("GET /api/v1/accounts?%s: accounts is not a list: %s", query, r.body)
	}
	return page
}

// listAccounts pages through a listing with limit and returns every
// account id in order and the number of pages.
func (h *harness) listAccounts(tok string, q url.Values, limit int) (ids []string, pages int) {
	h.t.Helper()
	q.Set("limit", fmt.Sprint(limit))
	for {
		page := h.accountPage(tok, q.Encode())
		pages++
		if len(page.Accounts) > limit {
			h.t.Fatalf("page of %d accounts with limit %d", len(page.Accounts), limit)
		}
		for _, a := range page.Accounts {
			ids = append(ids, a["account_id"].(string))
		}
		if page.NextCursor == nil {
			return ids, pages
		}
		if pages > 50 {
			h.t.Fatalf("listing did not end after %d pages", pages)
		}
		q.Set("cursor", *page.NextCursor)
	}
}

// waitSummary waits for the read model to hold account id (the summary
// route waits for min_version) and returns its summary body.
func (h *harness) waitSummary(tok, id string) map[string]any {
	h.t.Helper()
	r := h.do("GET", "/api/v1/accounts/"+id+"/summary?min_version=1", tok, "")
	if r.status != http.StatusOK {
		h.t.Fatalf("summary of %s: %s", id, r)
	}
	var s map[string]any
	r.decode(h.t, &s)
	return s
}

func sortedCopy(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestListAccounts(t *testing.T) {
	h := newHarness(t)
	admin, alice, bob := token(t, "root", "admin"), token(t, "alice"), token(t, "bob")
	summaries := map[string]map[string]any{}
	var aliceIDs, bobIDs []string
	for i := range 3 {
		a := h.open(alice, fmt.Sprint("LIST-A", i), int64(10*i))
		aliceIDs = append(aliceIDs, a.ID)
	}
	for i := range 2 {
		b := h.open(bob, fmt.Sprint("LIST-B", i), 5)
		bobIDs = append(bobIDs, b.ID)
	}
	for _, id := range slices.Concat(aliceIDs, bobIDs) {
		summaries[id] = h.waitSummary(admin, id)
	}
	all := sortedCopy(slices.Concat(aliceIDs, bobIDs))

	t.Run("admin pages over every account once", func(t *testing.T) {
		h := h.as(t)
		ids, pages := h.listAccounts(admin, url.Values{}, 2)
		if !slices.Equal(sortedCopy(ids), all) {
			t.Fatalf("listed %q, want each of %q once", ids, all)
		}
		if pages < 3 {
			t.Fatalf("%d accounts in %d pages of 2", len(ids), pages)
		}
		// Items are the summary route's bodies, field for field.
		page := h.accountPage(admin, "limit=1000")
		if len(page.Accounts) != len(all) || page.NextCursor != nil {
			t.Fatalf("one big page: %d accounts, next %v", len(page.Accounts), page.NextCursor)
		}
		for _, a := range page.Accounts {
			if want := summaries[a["account_id"].(string)]; !reflect.DeepEqual(a, want) {
				t.Fatalf("listed %v\nsummary %v", a, want)
			}
		}
	})

	t.Run("admin filters by owner", func(t *testing.T) {
		h := h.as(t)
		ids, _ := h.listAccounts(admin, url.Values{"owner": {"bob"}}, 1)
		if !slices.Equal(sortedCopy(ids), sortedCopy(bobIDs)) {
			t.Fatalf("bob's accounts %q, want %q", ids, bobIDs)
		}
		if ids, _ := h.listAccounts(admin, url.Values{"owner": {"nobody"}}, 2); len(ids) != 0 {
			t.Fatalf("nobody's accounts %q", ids)
		}
	})

	t.Run("a non-admin sees only their own", func(t *testing.T) {
		h := h.as(t)
		for _, q := range []url.Values{{}, {"owner": {"bob"}}, {"owner": {"alice"}}} {
			ids, _ := h.listAccounts(alice, q, 2)
			if !slices.Equal(sortedCopy(ids), sortedCopy(aliceIDs)) {
				t.Fatalf("alice with %v lists %q, want %q", q, ids, aliceIDs)
			}
		}
	})

	t.Run("account_number finds one account", func(t *testing.T) {
		h := h.as(t)
		for _, c := range []struct {
			tok, number string
			want        []string
		}{
			{alice, "LIST-A1", aliceIDs[1:2]},
			{admin, "LIST-B0", bobIDs[:1]},
			{alice, "LIST-B0", nil}, // someone else's
			{alice, "NO-SUCH", nil},
			{admin, "NO-SUCH", nil},
		} {
			page := h.accountPage(c.tok, url.Values{"account_number": {c.number}}.Encode())
			var ids []string
			for _, a := range page.Accounts {
				ids = append(ids, a["account_id"].(string))
			}
			if !slices.Equal(ids, c.want) || page.NextCursor != nil {
				t.Fatalf("account_number %s: %q next %v, want %q and no cursor", c.number, ids, page.NextCursor, c.want)
			}
		}
		page := h.accountPage(admin, url.Values{"account_number": {"LIST-B0"}, "owner": {"alice"}}.Encode())
		if len(page.Accounts) != 0 {
			t.Fatalf("bob's account under owner=alice: %v", page.Accounts)
		}
	})

	t.Run("bad cursors and limits are 400", func(t *testing.T) {
		h := h.as(t)
		first := h.accountPage(admin, "limit=1")
		if first.NextCursor == nil {
			t.Fatal("no cursor after a page of 1")
		}
		bobsFirst := h.accountPage(admin, "limit=1&owner=bob")
		if bobsFirst.NextCursor == nil {
			t.Fatal("no cursor after bob's page of 1")
		}
		forged, _ := json.Marshal(map[string]any{"p": 0, "k": "acc_", "f": "0000000000000000"})
		for who, query := range map[string]string{
			"not base64":           "cursor=!!!",
			"base64 of junk":       "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("junk")),
			"unknown field":        "cursor=" + base64.RawURLEncoding.EncodeToString([]byte(`{"p":0,"k":"acc_","f":"x","z":1}`)),
			"forged filter":        "cursor=" + base64.RawURLEncoding.EncodeToString(forged),
			"all's cursor for bob": "owner=bob&cursor=" + url.QueryEscape(*first.NextCursor),
			"bob's cursor for all": "cursor=" + url.QueryEscape(*bobsFirst.NextCursor),
			"limit 0":              "limit=0",
			"limit 1001":           "limit=1001",
			"limit not a number":   "limit=ten",
			"cursor with a partition beyond": "cursor=" + base64.RawURLEncoding.EncodeToString(
				[]byte(fmt.Sprintf(`{"p":100000,"k":"acc_","f":%q}`, cursorFilter(t, *first.NextCursor)))),
		} {
			t.Run(who, func(t *testing.T) {
				h.as(t).do("GET", "/api/v1/accounts?"+query, admin, "").problem(t, http.StatusBadRequest, "validation_failed")
			})
		}
		// Alice cannot resume the admin's unfiltered listing as her own.
		h.do("GET", "/api/v1/accounts?cursor="+url.QueryEscape(*first.NextCursor), alice, "").
			problem(t, http.StatusBadRequest, "validation_failed")
		h.do("GET", "/api/v1/accounts", "", "").problem(t, http.StatusUnauthorized, "unauthorized")
	})
}

// cursorFilter reads the filter hash out of a cursor, to forge one that
// differs only in its partition.
func cursorFilter(t *testing.T, cursor string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		t.Fatalf("cursor %q: %v", cursor, err)
	}
	var c struct {
		F string `json:"f"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("cursor %q: %v", cursor, err)
	}
	return c.F
}
