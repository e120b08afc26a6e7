// Command grpcclient makes every kind of gRPC call (package grpcecho)
// through a proxy, from the lab's client: grpcclient ADDR AUTHORITY. It
// prints the pod that answered and exits 0, or says what went wrong and
// exits 1.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/portico-lb/portico/e2e/grpcecho"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: grpcclient ADDR AUTHORITY")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod, err := grpcecho.Check(ctx, os.Args[1], os.Args[2])
	if err != nil {
		fmt.Println("grpcclient:", err)
		os.Exit(1)
	}
	fmt.Println("ok pod", pod)
}
