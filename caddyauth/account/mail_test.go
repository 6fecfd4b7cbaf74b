package account

import (
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		72 * time.Hour:   "3 days",
		time.Hour:        "1 hour",
		30 * time.Minute: "30 minutes",
		90 * time.Second: "2 minutes",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMayGrant(t *testing.T) {
	for _, c := range []struct {
		inviter, role int
		ok            bool
	}{
		{1000, 1000, true}, {1000, 900, true}, {1000, 300, true}, {1000, 0, true},
		{900, 1000, false}, {900, 900, true}, {900, 300, true},
		{300, 300, true}, {300, 0, true}, {300, 400, false}, {300, 200, false}, {300, 900, false},
		{0, 0, true}, {0, 1, false},
	} {
		if got := mayGrant(c.inviter, c.role); got != c.ok {
			t.Errorf("mayGrant(%d, %d) = %v", c.inviter, c.role, got)
		}
	}
}
