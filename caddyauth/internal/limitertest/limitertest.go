// Package limitertest is the behaviour every rate limiter shares (the
// in-memory one in caddyauth/account/limiter.go and the Redis one in
// caddyauth/redislimit), run against each by its own tests.
package limitertest

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// ReserveAndCancel checks Reserve and Cancel on keys no other test uses:
// a reserved event counts like an allowed one, a cancelled one no longer
// counts (in-flight attempts bound a burst, only the kept ones stay), a
// refused reservation has no id, and cancelling twice, an unknown id or
// another key's id changes nothing.
func ReserveAndCancel(t *testing.T, l account.RateLimiter) {
	t.Helper()
	ctx := context.Background()
	const limit, window = 3, time.Minute
	reserve := func(key string) (string, bool) {
		t.Helper()
		id, ok, wait, err := l.Reserve(ctx, key, limit, window)
		if err != nil {
			t.Fatalf("Reserve: %v", err)
		}
		if ok != (id != "") || ok != (wait == 0) {
			t.Fatalf("Reserve answered id %q, ok %v, wait %v", id, ok, wait)
		}
		return id, ok
	}
	cancel := func(key, id string) {
		t.Helper()
		if err := l.Cancel(ctx, key, id); err != nil {
			t.Fatalf("Cancel: %v", err)
		}
	}
	var ids []string
	for i := range limit {
		id, ok := reserve("burst")
		if !ok {
			t.Fatalf("reservation %d of %d refused", i+1, limit)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("ids repeat: %q", ids)
	}
	if _, ok := reserve("burst"); ok {
		t.Fatal("a reservation over the limit was granted: a burst would get through")
	}
	if ok, _, err := l.Allow(ctx, "burst", limit, window); ok || err != nil {
		t.Fatalf("Allow over reservations: %v %v", ok, err)
	}
	// Cancelling another key's id, an unknown id or nothing frees nothing.
	cancel("other", ids[1])
	cancel("burst", "no-such-event")
	cancel("burst", "")
	if _, ok := reserve("burst"); ok {
		t.Fatal("a cancel of nothing freed a place")
	}
	cancel("burst", ids[1])
	cancel("burst", ids[1])
	if _, ok := reserve("burst"); !ok {
		t.Fatal("a cancelled event still counts")
	}
	if _, ok := reserve("burst"); ok {
		t.Fatal("one cancel freed two places")
	}
	if ok, _, err := l.Allow(ctx, "other", limit, window); !ok || err != nil {
		t.Fatalf("another key: %v %v", ok, err)
	}
}
