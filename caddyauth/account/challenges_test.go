package account

import (
	"testing"
	"time"
)

func TestOnceASecond(t *testing.T) {
	var o onceASecond
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		at   time.Duration // from t0
		want bool
	}{
		{0, true},
		{0, false},
		{999 * time.Millisecond, false},
		{time.Second, true},
		{1500 * time.Millisecond, false},
		// The clock set back an hour: let in at once, then once a
		// second of the clock as it now reads.
		{-time.Hour, true},
		{-time.Hour + 500*time.Millisecond, false},
		{-time.Hour + time.Second, true},
	} {
		if got := o.due(t0.Add(step.at)); got != step.want {
			t.Fatalf("due at %v = %v, want %v", step.at, got, step.want)
		}
	}
}
