// Package e2e holds Portico's end-to-end tests, which run in the lab
// (e2e/lab). They are behind the e2e build tag, so `go test ./...` never
// starts a lab:
//
//	go test -tags e2e -count=1 -timeout 20m ./e2e/
//
// The tests build the lab's binaries, bring the lab up once (or use one
// that is already up, and leave it up) and talk to the cluster the way a
// user does: kubectl objects in, curl from the client namespace out.
// Without root or the Kubernetes binaries they are skipped, except under
// CI=true, where that is a failure.
package e2e
