package controller

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// kicker re-queues objects that a reconciler learns need another look (a
// pending Service when an address frees, a pool whose counters moved). Kick
// never blocks the caller: keys are coalesced in a set and one goroutine,
// started by the manager, feeds them to the controller's queue.
type kicker struct {
	mu     sync.Mutex
	keys   map[types.NamespacedName]struct{}
	signal chan struct{}
	out    chan event.GenericEvent
}

func newKicker() *kicker {
	return &kicker{
		keys:   map[types.NamespacedName]struct{}{},
		signal: make(chan struct{}, 1),
		out:    make(chan event.GenericEvent),
	}
}

// Kick asks for the named objects to be reconciled again.
func (k *kicker) Kick(keys ...types.NamespacedName) {
	if len(keys) == 0 {
		return
	}
	k.mu.Lock()
	for _, key := range keys {
		k.keys[key] = struct{}{}
	}
	k.mu.Unlock()
	select {
	case k.signal <- struct{}{}:
	default:
	}
}

// Start implements manager.Runnable.
func (k *kicker) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.signal:
		}
		k.mu.Lock()
		batch := k.keys
		k.keys = map[types.NamespacedName]struct{}{}
		k.mu.Unlock()
		for key := range batch {
			obj := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
			select {
			case k.out <- event.GenericEvent{Object: obj}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader reconciles, so only the leader needs kicks.
func (k *kicker) NeedLeaderElection() bool { return true }

func (k *kicker) source() source.Source {
	return source.Channel(k.out, &handler.EnqueueRequestForObject{})
}
