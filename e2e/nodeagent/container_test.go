package nodeagent

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	for _, c := range []struct {
		prev, ran, want time.Duration
	}{
		{0, time.Second, time.Second},
		{time.Second, time.Second, 2 * time.Second},
		{16 * time.Second, time.Second, 30 * time.Second},
		{30 * time.Second, time.Second, 30 * time.Second},
		{16 * time.Second, time.Minute, 30 * time.Second}, // a run of exactly a minute does not reset
		{30 * time.Second, 2 * time.Minute, 0},
	} {
		if got := nextBackoff(c.prev, c.ran); got != c.want {
			t.Errorf("nextBackoff(%s, %s) = %s, want %s", c.prev, c.ran, got, c.want)
		}
	}
}
