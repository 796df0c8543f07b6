package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"granary/internal/redispipe"
	"granary/persistence"
)

// The saga index lives under one hash tag so each update is one MULTI:
//
//	<prefix>:{sagas}:rec      hash  kind/id -> JSON record
//	<prefix>:{sagas}:started  zset  kind/id scored by StartedAt (ms)
//	<prefix>:{sagas}:open     zset  kind/id scored by UpdatedAt (ms), open sagas only
func (k keys) sagaRecords() string { return k.prefix + ":{sagas}:rec" }
func (k keys) sagaStarted() string { return k.prefix + ":{sagas}:started" }
func (k keys) sagaOpen() string    { return k.prefix + ":{sagas}:open" }

// maxSagaScan bounds how many records one listing reads while filtering.
const maxSagaScan = 20_000

type sagaJSON struct {
	Kind       string `json:"k"`
	ID         string `json:"i"`
	Status     string `json:"s"`
	FailedStep string `json:"f,omitempty"`
	StartedAt  int64  `json:"a"`
	UpdatedAt  int64  `json:"u"`
}

func member(kind, id string) string { return kind + "/" + id }

// PutSaga implements persistence.SagaIndex.
func (s *Store) PutSaga(ctx context.Context, r persistence.SagaRecord) error {
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("put saga %s/%s: %w", r.Kind, r.ID, err)
	}
	m := member(r.Kind, r.ID)
	data, err := json.Marshal(sagaJSON{Kind: r.Kind, ID: r.ID, Status: r.Status, FailedStep: r.FailedStep,
		StartedAt: r.StartedAt.UnixMilli(), UpdatedAt: r.UpdatedAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("put saga %s: %w", m, err)
	}
	// The script writes the start time Redis keeps, so the JSON goes in
	// two halves around it. `,"a":` cannot occur inside a JSON string (its
	// quote would be escaped), so the first one is the key's.
	i := bytes.Index(data, []byte(`,"a":`))
	if i < 0 {
		return fmt.Errorf("put saga %s: record JSON has no start time", m)
	}
	i += len(`,"a":`)
	j := i
	for j < len(data) && (data[j] == '-' || data[j] >= '0' && data[j] <= '9') {
		j++
	}
	open := "0"
	if r.Open() {
		open = "1"
	}
	keys := []string{s.keys.sagaStarted(), s.keys.sagaRecords(), s.keys.sagaOpen()}
	args := []any{m, r.StartedAt.UnixMilli(), data[:i], data[j:], r.UpdatedAt.UnixMilli(), open}
	if s.gcOff {
		err = putSagaScript.Run(ctx, s.client, keys, args...).Err()
	} else {
		// A saga indexes itself at every step: through the journal's
		// pipelines the update shares round trips with the appends.
		err = putSagaScript.Run(ctx, s.pipe, keys, args...).Err()
		if errors.Is(err, redispipe.ErrClosed) {
			err = persistence.ErrClosed
		}
	}
	if err != nil {
		return fmt.Errorf("put saga %s: %w", m, err)
	}
	return nil
}

// ListSagas implements persistence.SagaIndex: it walks the started set
// from the cursor's score down, a page of members at a time, and looks at
// maxSagaScan records at most, so a filter matching little cannot make one
// call unbounded; it then hands out a cursor at the last record it looked
// at.
func (s *Store) ListSagas(ctx context.Context, f persistence.SagaFilter) ([]persistence.SagaRecord, *persistence.SagaCursor, error) {
	if err := s.usable(ctx); err != nil {
		return nil, nil, fmt.Errorf("list sagas: %w", err)
	}
	limit := max(1, min(f.Limit, persistence.MaxSagaList))
	top := "+inf"
	if f.After != nil {
		top = strconv.FormatInt(f.After.StartedAt.UnixMilli(), 10)
	}
	var out []persistence.SagaRecord
	const page = 500
	var last *persistence.SagaCursor
	for offset, scanned := int64(0), 0; ; offset += page {
		zs, err := s.client.ZRevRangeByScoreWithScores(ctx, s.keys.sagaStarted(), &goredis.ZRangeBy{
			Max: top, Min: "-inf", Offset: offset, Count: page,
		}).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("list sagas: %w", err)
		}
		members := make([]string, 0, len(zs))
		for _, z := range zs {
			m, _ := z.Member.(string)
			kind, id, _ := strings.Cut(m, "/")
			if f.After != nil && !persistence.SagaBefore(*f.After, persistence.SagaRecord{Kind: kind, ID: id, StartedAt: time.UnixMilli(int64(z.Score))}) {
				continue // listed on an earlier page (same millisecond)
			}
			members = append(members, m)
		}
		recs, err := s.sagaRecords(ctx, members)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range recs {
			if (len(f.Statuses) == 0 || slices.Contains(f.Statuses, r.Status)) && (len(f.Kinds) == 0 || slices.Contains(f.Kinds, r.Kind)) {
				if len(out) == limit {
					// One more matches: the page is full and not the last.
					l := out[limit-1]
					return out, &persistence.SagaCursor{StartedAt: l.StartedAt, Kind: l.Kind, ID: l.ID}, nil
				}
				out = append(out, r)
			}
		}
		if n := len(zs); n > 0 {
			m, _ := zs[n-1].Member.(string)
			kind, id, _ := strings.Cut(m, "/")
			last = &persistence.SagaCursor{StartedAt: time.UnixMilli(int64(zs[n-1].Score)), Kind: kind, ID: id}
		}
		scanned += len(zs)
		if len(zs) < page {
			return out, nil, nil
		}
		if scanned >= maxSagaScan {
			return out, last, nil
		}
	}
}

// OpenSagas implements persistence.SagaIndex.
func (s *Store) OpenSagas(ctx context.Context, before time.Time, limit int) ([]persistence.SagaRecord, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("open sagas: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	members, err := s.client.ZRangeByScore(ctx, s.keys.sagaOpen(), &goredis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("open sagas: %w", err)
	}
	return s.sagaRecords(ctx, members)
}

func (s *Store) sagaRecords(ctx context.Context, members []string) ([]persistence.SagaRecord, error) {
	if len(members) == 0 {
		return nil, nil
	}
	vals, err := s.client.HMGet(ctx, s.keys.sagaRecords(), members...).Result()
	if err != nil {
		return nil, fmt.Errorf("read saga records: %w", err)
	}
	out := make([]persistence.SagaRecord, 0, len(vals))
	for i, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue // listed but its record is not written yet
		}
		var j sagaJSON
		if err := json.Unmarshal([]byte(raw), &j); err != nil || !strings.Contains(members[i], "/") {
			return nil, fmt.Errorf("saga record %s: %v: %w", members[i], err, persistence.ErrCorrupt)
		}
		out = append(out, persistence.SagaRecord{Kind: j.Kind, ID: j.ID, Status: j.Status, FailedStep: j.FailedStep,
			StartedAt: time.UnixMilli(j.StartedAt).UTC(), UpdatedAt: time.UnixMilli(j.UpdatedAt).UTC()})
	}
	return out, nil
}
