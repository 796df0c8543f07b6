package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

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
	// Keep the first start time: ZADD NX never moves it, and the record
	// is rewritten with the stored score below.
	if err := s.client.ZAddNX(ctx, s.keys.sagaStarted(), goredis.Z{Score: float64(r.StartedAt.UnixMilli()), Member: m}).Err(); err != nil {
		return fmt.Errorf("put saga %s: %w", m, err)
	}
	started, err := s.client.ZScore(ctx, s.keys.sagaStarted(), m).Result()
	if err != nil {
		return fmt.Errorf("put saga %s: %w", m, err)
	}
	data, err := json.Marshal(sagaJSON{Kind: r.Kind, ID: r.ID, Status: r.Status, FailedStep: r.FailedStep,
		StartedAt: int64(started), UpdatedAt: r.UpdatedAt.UnixMilli()})
	if err != nil {
		return fmt.Errorf("put saga %s: %w", m, err)
	}
	_, err = s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.HSet(ctx, s.keys.sagaRecords(), m, data)
		if r.Open() {
			p.ZAdd(ctx, s.keys.sagaOpen(), goredis.Z{Score: float64(r.UpdatedAt.UnixMilli()), Member: m})
		} else {
			p.ZRem(ctx, s.keys.sagaOpen(), m)
		}
		return nil
	})
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
