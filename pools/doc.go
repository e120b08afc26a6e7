// Package pools hands out LoadBalancer IPs.
//
// It holds the address pools (CIDRs and first-last ranges, IPv4 and IPv6),
// decides which pool a Service may use and which address it gets, applies the
// IP sharing rules, keeps the first address of the default pool for the
// bundled ingress Service, and counts what is assigned and what is left.
//
// The package is plain Go with no Kubernetes client: the controller turns
// AddressPool objects into [Pool] values and Services into [Service] values,
// and writes the resulting [Assignment] back to the cluster. Everything here
// can be driven directly from tests.
//
// An allocation goes through three steps, each in its own file with its own
// tests: the request (request.go: what a Service asks for, checked and
// normalized), the plan (plan.go: whether what it holds still fits, else
// which pool and address it gets) and the ledger (ledger.go: who holds
// which address, and the sharing rules). reservation.go keeps the first
// address of the default pool for the ingress Service; pool.go and
// space.go hold the pools and their addresses; allocator.go ties these
// together behind one lock.
//
// Allocation never scans a pool. Each pool keeps, per address family, its free
// addresses as a set of disjoint intervals in a treap, so taking the lowest
// free address, taking a given address and giving one back are O(log n) in the
// number of free intervals, whether the pool is a /24 or a /64.
package pools
