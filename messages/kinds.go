package messages

// Cluster kind names: the one place the grains that host a kind and the
// clients that call it agree on. A kind's name is part of every grain
// identity lookup, so renaming one strands the grains already placed.
const (
	AccountKind      = "account"
	CounterKind      = "counter"
	CounterGroupKind = "countergroup"
	InventoryKind    = "inventory"
	PaymentKind      = "payment"
	UserKind         = "user"
	ProjectionKind   = "projection"
	OrderSagaKind    = "order_saga"
	TransferSagaKind = "transfer_saga"
	InstanceKind     = "service_instance"
	RouteKind        = "route_table"
	// RouteTableID is the route table grain's only identity.
	RouteTableID = "routes"
	// AuthServiceName is the built-in service that hashes and verifies
	// passwords.
	AuthServiceName = "auth"
)

// Saga statuses, as SagaState.Status and the saga list show them.
const (
	SagaStatusStarted      = "started"
	SagaStatusCompensating = "compensating"
	SagaStatusCompleted    = "completed"
	SagaStatusCompensated  = "compensated"
	SagaStatusScheduled    = "scheduled"
	SagaStatusCancelled    = "cancelled"
)

// Registry values clients send and see.
const (
	InstanceStatusUp = "UP"
	RouteAuthPublic  = "public"
	RouteRoundRobin  = "round_robin"
)
