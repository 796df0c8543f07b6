package messages

import "regexp"

// Client-facing limits: what a request may carry. The gateway checks them
// before a grain is activated and the grains check them again, both
// against these values.
const (
	// MaxAmount bounds every amount a client may send (10^15 minor units).
	MaxAmount int64 = 1_000_000_000_000_000
	// MaxCounterIncrement bounds one counter increment.
	MaxCounterIncrement int64 = 1_000_000_000_000_000
	// MaxQuantity bounds a product's stock and an order's quantity.
	MaxQuantity int64 = 1_000_000_000
	// MaxDisplayName is a user's display name limit, in characters.
	MaxDisplayName = 200
	// MaxPasswordLen is the longest password hashed, in bytes.
	MaxPasswordLen = 1024
	// Registry instance TTL and route timeout defaults and bounds.
	DefaultInstanceTTLSeconds = 30
	DefaultRouteTimeoutMS     = 5000
	MaxRouteTimeoutMS         = 60000
	// AdminUsername is the user GRANARY_ADMIN_PASSWORD creates; nobody
	// else may register it.
	AdminUsername = "admin"
)

var (
	// CounterNamePattern is a counter's (or counter group's) name: a
	// grain identity.
	CounterNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	// UsernamePattern is a username: the user grain's identity.
	UsernamePattern = regexp.MustCompile(`^[a-z0-9_.-]{3,64}$`)
	// UserIDPattern is a Granary-issued user id (a token's sub).
	UserIDPattern = regexp.MustCompile(`^usr_[a-z2-7]{26}$`)
	// RegistryNamePattern is a registered service, instance or route name.
	RegistryNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
)
