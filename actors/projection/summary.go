package projection

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"granary/messages"
	"granary/persistence"
)

// Summary is the AccountSummary read model of one account, as the HTTP
// contract shows it. Owner is not part of the contract's body (json "-")
// but is kept so the gateway can check who may read it.
type Summary struct {
	AccountID        string `json:"account_id"`
	AccountNumber    string `json:"account_number"`
	Owner            string `json:"-"`
	OwnerName        string `json:"owner_name"`
	CurrentBalance   int64  `json:"current_balance"`
	TotalDeposits    int64  `json:"total_deposits"`
	TotalWithdrawals int64  `json:"total_withdrawals"`
	// TransactionCount counts deposits and withdrawals, and the opening
	// when its initial balance is above 0.
	TransactionCount int64     `json:"transaction_count"`
	IsClosed         bool      `json:"is_closed"`
	LastActivity     time.Time `json:"last_activity"`
	// Version is the last account version folded in.
	Version uint64 `json:"version"`
}

// The AccountSummary documents of a partition are of two kinds: a summary
// keyed by its account id, and an owner index document keyed
// owner/<owner>/<account id> whose data is the account id, written once
// when the account is opened (its owner never changes), so the accounts of
// one owner can be listed in key order without reading everyone's.
const (
	// SummaryKeyPrefix starts every summary key: account ids do
	// (account.IDFor).
	SummaryKeyPrefix = "acc_"
	ownerIndexRoot   = "owner/"
	// maxOwnerSegment is the longest owner kept readable in an index key;
	// a longer one is hashed, so every index key fits persistence.MaxDocKey.
	maxOwnerSegment = 128
)

// OwnerIndexPrefix starts the owner index keys of owner's accounts. The
// owner is escaped so that it holds no '/' and no owner's prefix starts
// another's; an owner too long for a key becomes "#" and its SHA-256 (a
// '#' never survives escaping, so the two forms cannot meet).
func OwnerIndexPrefix(owner string) string {
	seg := url.PathEscape(owner)
	if len(seg) > maxOwnerSegment {
		sum := sha256.Sum256([]byte(owner))
		seg = "#" + hex.EncodeToString(sum[:])
	}
	return ownerIndexRoot + seg + "/"
}

// ownerIndexKey is the owner index key of account id, or "" when the id
// is too long for one (no gateway-made id is).
func ownerIndexKey(owner, id string) string {
	k := OwnerIndexPrefix(owner) + id
	if len(k) > persistence.MaxDocKey {
		return ""
	}
	return k
}

// isIndexKey tells owner index documents from summaries.
func isIndexKey(key string) bool { return strings.HasPrefix(key, ownerIndexRoot) }

// GapError reports an event that does not follow the summary's version:
// an event is missing from what the projection read, which must never be
// papered over. It matches persistence.ErrCorrupt.
type GapError struct {
	AccountID string
	Have      uint64
	Got       uint64
}

func (e *GapError) Error() string {
	return fmt.Sprintf("summary of %s is at version %d, next event has version %d: %v", e.AccountID, e.Have, e.Got, persistence.ErrCorrupt)
}

func (e *GapError) Is(target error) bool { return target == persistence.ErrCorrupt }

// Apply folds the account event with the given version into s. It is pure.
// An event at or below s.Version was folded already and leaves s as it is
// (so a replay is harmless); one beyond s.Version+1 is a *GapError.
func Apply(s Summary, accountID string, version uint64, ev *messages.AccountEvent) (Summary, error) {
	if version <= s.Version {
		return s, nil
	}
	if version != s.Version+1 {
		return s, &GapError{AccountID: accountID, Have: s.Version, Got: version}
	}
	switch e := ev.GetEvent().(type) {
	case *messages.AccountEvent_Opened:
		o := e.Opened
		s.AccountNumber = o.GetAccountNumber()
		s.Owner = o.GetOwner()
		s.OwnerName = o.GetOwnerName()
		// The initial balance is the first deposit, and a transaction
		// when there was money in it.
		s.CurrentBalance = o.GetInitialBalance()
		s.TotalDeposits = o.GetInitialBalance()
		if o.GetInitialBalance() > 0 {
			s.TransactionCount = 1
		}
	case *messages.AccountEvent_Deposited:
		s.CurrentBalance += e.Deposited.GetAmount()
		s.TotalDeposits += e.Deposited.GetAmount()
		s.TransactionCount++
	case *messages.AccountEvent_Withdrawn:
		s.CurrentBalance -= e.Withdrawn.GetAmount()
		s.TotalWithdrawals += e.Withdrawn.GetAmount()
		s.TransactionCount++
	case *messages.AccountEvent_Closed:
		s.IsClosed = true
	}
	s.AccountID = accountID
	s.Version = version
	s.LastActivity = time.UnixMilli(ev.GetOccurredAtUnixMs()).UTC()
	return s, nil
}

// summaryDoc is how a Summary is stored. Its field names are storage
// format: never rename one (add fields instead).
type summaryDoc struct {
	AccountID        string `json:"id"`
	AccountNumber    string `json:"number"`
	Owner            string `json:"owner"`
	OwnerName        string `json:"owner_name"`
	CurrentBalance   int64  `json:"balance"`
	TotalDeposits    int64  `json:"deposits"`
	TotalWithdrawals int64  `json:"withdrawals"`
	TransactionCount int64  `json:"transactions"`
	IsClosed         bool   `json:"closed,omitempty"`
	LastActivityMs   int64  `json:"last_activity_ms"`
	Version          uint64 `json:"version"`
}

func encodeSummary(s Summary) ([]byte, error) {
	return json.Marshal(summaryDoc{
		AccountID: s.AccountID, AccountNumber: s.AccountNumber, Owner: s.Owner, OwnerName: s.OwnerName,
		CurrentBalance: s.CurrentBalance, TotalDeposits: s.TotalDeposits, TotalWithdrawals: s.TotalWithdrawals,
		TransactionCount: s.TransactionCount, IsClosed: s.IsClosed, LastActivityMs: s.LastActivity.UnixMilli(),
		Version: s.Version,
	})
}

// DecodeSummary reads a stored summary document of key (its account id),
// as ListDocs returns them; damage is persistence.ErrCorrupt.
func DecodeSummary(key string, data []byte) (Summary, error) { return decodeSummary(key, data) }

// decodeSummary reads a stored summary; damage is persistence.ErrCorrupt.
func decodeSummary(key string, data []byte) (Summary, error) {
	var d summaryDoc
	if err := json.Unmarshal(data, &d); err != nil {
		return Summary{}, fmt.Errorf("summary %s: %v: %w", key, err, persistence.ErrCorrupt)
	}
	if d.AccountID != key || d.Version == 0 {
		return Summary{}, fmt.Errorf("summary %s holds account %q at version %d: %w", key, d.AccountID, d.Version, persistence.ErrCorrupt)
	}
	return Summary{
		AccountID: d.AccountID, AccountNumber: d.AccountNumber, Owner: d.Owner, OwnerName: d.OwnerName,
		CurrentBalance: d.CurrentBalance, TotalDeposits: d.TotalDeposits, TotalWithdrawals: d.TotalWithdrawals,
		TransactionCount: d.TransactionCount, IsClosed: d.IsClosed, LastActivity: time.UnixMilli(d.LastActivityMs).UTC(),
		Version: d.Version,
	}, nil
}
