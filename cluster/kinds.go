package cluster

import (
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"granary/actors/account"
)

// Kinds returns the grain kinds every Granary member hosts, for Start. Each
// member's grains report that member's id (X-Served-By).
func Kinds(accounts account.GrainConfig) func(memberID string) []*pcluster.Kind {
	return func(memberID string) []*pcluster.Kind {
		a := accounts
		a.MemberID = memberID
		return []*pcluster.Kind{pcluster.NewKind(account.Kind, account.Props(a))}
	}
}
