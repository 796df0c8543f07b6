package cluster_test

// A simulation of where grains live, for docs/scaling.md. It drives
// Proto.Actor's own exported rendezvous hash (pcluster.NewRendezvous, the
// one disthash's partition manager and placement actor build on every
// topology change) over synthetic members, so the figures are those of the
// pinned library rather than of a textbook model of it. No actor system is
// started: placement is a pure function of the member list.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

const placementKind = "account"

// memberLayout spells the addresses members get: the rendezvous score is
// FNV-1a 32 over identity then "host:port", so the shape of the addresses
// is an input of the placement.
type memberLayout struct {
	name string
	addr func(i int) (host string, port int32)
	// skewed marks a layout the pinned hash places unfairly (see
	// docs/scaling.md): the test then checks that the skew is still there,
	// so a library upgrade that fixes it says the doc must change.
	skewed bool
}

var placementLayouts = []memberLayout{
	// One pod per member: distinct IPs, one port (Kubernetes, compose).
	{"pods", func(i int) (string, int32) { return fmt.Sprintf("10.0.%d.%d", i/250, i%250+2), 8090 }, false},
	// Members on one host: one IP, consecutive ports (make cluster).
	// Only the last digits of the address differ, and FNV-1a mixes its last
	// bytes poorly: these members' scores are correlated.
	{"ports", func(i int) (string, int32) { return "127.0.0.1", int32(20000 + i) }, true},
}

// shortID makes an id shaped like an actor system's (shortuuid: 22 chars
// of base57). Ids only order the members (the tie-break); they are not hashed.
func shortID(r *rand.Rand) string {
	const alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	b := make([]byte, 22)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// placementMembers returns members 0..n-1 of layout; member i is the same
// member (id and address) whatever n is, so n → n+1 is one join.
func placementMembers(layout memberLayout, n int) pcluster.Members {
	r := rand.New(rand.NewPCG(42, 7))
	ms := make(pcluster.Members, n)
	for i := range ms {
		host, port := layout.addr(i)
		ms[i] = &pcluster.Member{Host: host, Port: port, Id: shortID(r), Kinds: []string{placementKind}}
	}
	return ms
}

// owners returns the owner's address of identities 0..grains-1 under members.
func owners(members pcluster.Members, grains int) []string {
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(members)
	out := make([]string, grains)
	ci := &pcluster.ClusterIdentity{Kind: placementKind}
	for i := range out {
		ci.Identity = grainIdentity(i)
		out[i] = rdv.GetByClusterIdentity(ci)
	}
	return out
}

// grainIdentity is shaped like Granary's account numbers.
func grainIdentity(i int) string { return fmt.Sprintf("ACC-%d", i) }

// spread is the most and least loaded member's grain count over the mean.
func spread(own []string, members int) (maxRatio, minRatio float64) {
	count := make(map[string]int, members)
	for _, o := range own {
		count[o]++
	}
	hi, lo := 0, len(own)
	for _, c := range count {
		hi, lo = max(hi, c), min(lo, c)
	}
	if len(count) < members {
		lo = 0 // a member that owns nothing
	}
	mean := float64(len(own)) / float64(members)
	return float64(hi) / mean, float64(lo) / mean
}

// raceEnabled reports whether the test binary was built with -race, where
// hashing is about ten times slower.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// placementGrains scales the identity count so the whole test stays near
// ten seconds: a lookup costs about 50 ns per member, so the 1 000-member
// cases get fewer identities.
func placementGrains(members int) int {
	n := 100_000
	if members >= 1000 {
		n = 50_000
	}
	if testing.Short() || raceEnabled() {
		n /= 10
		if members >= 1000 {
			n /= 2
		}
	}
	return n
}

// fairMax approximates the most loaded member's share over the mean when
// grains land uniformly at random: 1 + sqrt(2 ln(members) / per-member mean).
func fairMax(grains, members int) float64 {
	return 1 + math.Sqrt(2*math.Log(float64(members))*float64(members)/float64(grains))
}

func TestPlacementMovedFraction(t *testing.T) {
	cases := []struct{ from, to int }{{100, 101}, {100, 99}, {1000, 1001}}
	for _, layout := range placementLayouts {
		for _, tc := range cases {
			if layout.skewed && tc.from >= 1000 {
				continue // a thousand members on one host is no deployment; spend the time on pods
			}
			t.Run(fmt.Sprintf("%s/%d-%d", layout.name, tc.from, tc.to), func(t *testing.T) {
				grains := placementGrains(max(tc.from, tc.to))
				big := placementMembers(layout, max(tc.from, tc.to))
				before := owners(big[:tc.from], grains)
				after := owners(big[:tc.to], grains)
				// Rendezvous moves only the grains the change concerns: a
				// join takes grains only onto the new member, a leave only
				// off the departed one.
				changed := big[min(tc.from, tc.to)].Address()
				moved := 0
				for i := range before {
					if before[i] == after[i] {
						continue
					}
					moved++
					if tc.to > tc.from && after[i] != changed {
						t.Fatalf("%s moved %s → %s, not onto the joining member %s", grainIdentity(i), before[i], after[i], changed)
					}
					if tc.to < tc.from && before[i] != changed {
						t.Fatalf("%s moved %s → %s, not off the leaving member %s", grainIdentity(i), before[i], after[i], changed)
					}
				}
				frac := float64(moved) / float64(grains)
				// A fair hash gives the joining member 1/(n+1) of the grains
				// and takes the leaving member's 1/n.
				want := 1 / float64(max(tc.from, tc.to))
				maxB, minB := spread(before, tc.from)
				maxA, minA := spread(after, tc.to)
				t.Logf("%d grains, %d → %d members: moved %d = %.3f%% (ideal %.3f%%, ratio %.2f); load max/mean %.2f → %.2f (uniform ≈ %.2f), min/mean %.2f → %.2f",
					grains, tc.from, tc.to, moved, 100*frac, 100*want, frac/want, maxB, maxA, fairMax(grains, tc.to), minB, minA)
				if float64(grains)*want < 50 {
					return // too few expected moves to judge the fraction (-short, -race)
				}
				fair := frac >= want/1.5 && frac <= want*1.5 && maxA <= 1.5*fairMax(grains, tc.to)
				switch {
				case !layout.skewed && !fair:
					t.Errorf("placement is not fair: moved %.5f (ideal %.5f, tolerance 1.5×), max/mean %.2f (uniform ≈ %.2f, tolerance 1.5×)", frac, want, maxA, fairMax(grains, tc.to))
				case layout.skewed && fair:
					t.Errorf("layout %s was skewed and is now fair: update docs/scaling.md", layout.name)
				}
			})
		}
	}
}

func BenchmarkPlacementLookup(b *testing.B) {
	for _, members := range []int{100, 1000} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			rdv := pcluster.NewRendezvous()
			rdv.UpdateMembers(placementMembers(placementLayouts[0], members))
			ci := &pcluster.ClusterIdentity{Kind: placementKind}
			ids := make([]string, 1024)
			for i := range ids {
				ids[i] = grainIdentity(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				ci.Identity = ids[i%len(ids)]
				if rdv.GetByClusterIdentity(ci) == "" {
					b.Fatal("no owner")
				}
				i++
			}
		})
	}
}
