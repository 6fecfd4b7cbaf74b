package redislimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/limitertest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/redistest"
)

func uniquePrefix(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "jwt_allauth_test:" + hex.EncodeToString(b) + ":"
}

// newLimiter provisions a limiter in its own Caddy context, released when
// the test ends.
func newLimiter(t *testing.T, l *Limiter) *Limiter {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := l.Provision(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Cleanup(); err != nil {
			t.Error(err)
		}
		cancel()
	})
	return l
}

func allow(t *testing.T, l *Limiter, key string, limit int, window time.Duration) (bool, time.Duration) {
	t.Helper()
	ok, wait, err := l.Allow(context.Background(), key, limit, window)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return ok, wait
}

func TestLimitAndRetryAfter(t *testing.T) {
	l := newLimiter(t, &Limiter{URL: redistest.URL(t), KeyPrefix: uniquePrefix(t)})
	for i := range 3 {
		if ok, _ := allow(t, l, "k", 3, time.Minute); !ok {
			t.Fatalf("event %d refused", i+1)
		}
	}
	ok, wait := allow(t, l, "k", 3, time.Minute)
	if ok || wait <= 58*time.Second || wait > time.Minute {
		t.Fatalf("4th event: ok=%v wait=%v, want refused with about 1m", ok, wait)
	}
	// A refused event is not recorded, and other keys are independent.
	if ok, _ := allow(t, l, "other", 3, time.Minute); !ok {
		t.Fatal("another key was refused")
	}
	// A short window: events leave it and the key is usable again.
	for range 2 {
		allow(t, l, "short", 2, 300*time.Millisecond)
	}
	if ok, wait := allow(t, l, "short", 2, 300*time.Millisecond); ok || wait <= 0 || wait > 300*time.Millisecond {
		t.Fatalf("short window: ok=%v wait=%v", ok, wait)
	}
	time.Sleep(350 * time.Millisecond)
	if ok, _ := allow(t, l, "short", 2, 300*time.Millisecond); !ok {
		t.Fatal("short window did not slide")
	}
	if n := testutil.ToFloat64(l.fallbacks); n != 0 {
		t.Fatalf("%v fallbacks with Redis up", n)
	}
	// Keys expire with their window.
	c := l.conn.client
	ttl, err := c.PTTL(context.Background(), l.prefix+"k").Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("key TTL %v %v", ttl, err)
	}
}

func TestTwoNodesShareCounts(t *testing.T) {
	url := redistest.URL(t)
	prefix := uniquePrefix(t)
	// Different timeouts give each its own client, as two nodes have. Both
	// are long, so that a check slowed by a busy machine is not decided by
	// the in-memory fallback, which no other node shares.
	a := newLimiter(t, &Limiter{URL: url, KeyPrefix: prefix, Timeout: caddy.Duration(5 * time.Second)})
	b := newLimiter(t, &Limiter{URL: url, KeyPrefix: prefix, Timeout: caddy.Duration(6 * time.Second)})
	if a.conn == b.conn {
		t.Fatal("the two nodes share a client")
	}
	for i, l := range []*Limiter{a, b, a, b} {
		if ok, _ := allow(t, l, "shared", 4, time.Minute); !ok {
			t.Fatalf("event %d refused", i+1)
		}
	}
	for _, l := range []*Limiter{a, b} {
		if ok, _ := allow(t, l, "shared", 4, time.Minute); ok {
			t.Fatal("a node allowed a 5th event of 4")
		}
	}
}

func TestSharedClientAcrossReload(t *testing.T) {
	url := redistest.URL(t)
	a := newLimiter(t, &Limiter{URL: url, KeyPrefix: uniquePrefix(t)})
	b := newLimiter(t, &Limiter{URL: url, KeyPrefix: uniquePrefix(t)})
	if a.conn != b.conn {
		t.Fatal("two instances with the same URL opened two clients")
	}
}

func TestFallbackWhenRedisIsDown(t *testing.T) {
	// Nothing listens on port 1.
	l := newLimiter(t, &Limiter{URL: "redis://127.0.0.1:1/0", KeyPrefix: uniquePrefix(t)})
	start := time.Now()
	for i := range 3 {
		if ok, _ := allow(t, l, "k", 3, time.Minute); !ok {
			t.Fatalf("event %d refused", i+1)
		}
	}
	ok, wait := allow(t, l, "k", 3, time.Minute)
	if ok || wait <= 0 {
		t.Fatalf("memory fallback let a 4th event through (wait %v)", wait)
	}
	if d := time.Since(start); d > 4*defaultTimeout {
		t.Fatalf("4 checks took %v", d)
	}
	if n := testutil.ToFloat64(l.fallbacks); n != 4 {
		t.Fatalf("fallback metric %v, want 4", n)
	}
}

func TestFallbackWithinTimeoutWhenRedisHangs(t *testing.T) {
	// A listener that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	l := newLimiter(t, &Limiter{URL: "redis://" + ln.Addr().String() + "/0", Timeout: caddy.Duration(50 * time.Millisecond)})
	start := time.Now()
	if ok, _ := allow(t, l, "k", 1, time.Minute); !ok {
		t.Fatal("first event refused")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("check against a hanging Redis took %v", d)
	}
	if ok, _ := allow(t, l, "k", 1, time.Minute); ok {
		t.Fatal("fallback did not count")
	}
}

func TestRedisStopsAndComesBack(t *testing.T) {
	redistest.URL(t) // this test runs where the Redis tests run
	port, stop := redistest.Start(t, 0)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	l := newLimiter(t, &Limiter{URL: url, KeyPrefix: "p:"})
	direct := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer direct.Close()
	ctx := context.Background()

	allow(t, l, "k", 5, time.Minute)
	if n, _ := direct.ZCard(ctx, "p:k").Result(); n != 1 {
		t.Fatalf("Redis holds %d events, want 1", n)
	}
	stop()
	// Down: every check is answered, from memory, within the budget.
	for i := range 5 {
		start := time.Now()
		if ok, _ := allow(t, l, "k", 5, time.Minute); !ok {
			t.Fatalf("event %d refused during the outage", i+1)
		}
		if d := time.Since(start); d > 2*defaultTimeout {
			t.Fatalf("check during the outage took %v", d)
		}
	}
	if ok, _ := allow(t, l, "k", 5, time.Minute); ok {
		t.Fatal("memory fallback let a 6th event through")
	}
	if n := testutil.ToFloat64(l.fallbacks); n < 6 {
		t.Fatalf("fallback metric %v, want at least 6", n)
	}
	// Back (empty, no persistence): after the retry interval the counts go
	// to Redis again.
	redistest.Start(t, port)
	time.Sleep(retryInterval + 100*time.Millisecond)
	if ok, _ := allow(t, l, "k", 5, time.Minute); !ok {
		t.Fatal("refused after Redis came back empty")
	}
	if n, err := direct.ZCard(ctx, "p:k").Result(); err != nil || n != 1 {
		t.Fatalf("after recovery Redis holds %d events (%v), want 1", n, err)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Limiter
		wantErr string
	}{
		{in: `redis redis://127.0.0.1:6379/0`, want: Limiter{URL: "redis://127.0.0.1:6379/0"}},
		{in: `redis {env.REDIS_URL} {
			timeout 250ms
			key_prefix app1:
		}`, want: Limiter{URL: "{env.REDIS_URL}", Timeout: caddy.Duration(250 * time.Millisecond), KeyPrefix: "app1:"}},
		{in: `redis`, wantErr: "wrong argument count"},
		{in: `redis a b`, wantErr: "wrong argument count"},
		{in: `redis a {
			timeout soon
		}`, wantErr: "timeout"},
		{in: `redis a {
			colour blue
		}`, wantErr: "unrecognized"},
	} {
		var got Limiter
		err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got.URL != tc.want.URL || got.Timeout != tc.want.Timeout || got.KeyPrefix != tc.want.KeyPrefix {
			t.Errorf("%q: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestProvisionNeverShowsTheURL(t *testing.T) {
	l := &Limiter{URL: "redis://user:s3cr3t-pass@[::1"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := l.Provision(ctx)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("error %v", err)
	}
}

func TestReserveAndCancel(t *testing.T) {
	l := newLimiter(t, &Limiter{URL: redistest.URL(t), KeyPrefix: uniquePrefix(t)})
	limitertest.ReserveAndCancel(t, l)
	if n := testutil.ToFloat64(l.fallbacks); n != 0 {
		t.Fatalf("%v fallbacks with Redis up", n)
	}
}

// While Redis is down, reservations are counted and cancelled in memory.
func TestReserveAndCancelInFallback(t *testing.T) {
	l := newLimiter(t, &Limiter{URL: "redis://127.0.0.1:1/0", KeyPrefix: uniquePrefix(t)})
	limitertest.ReserveAndCancel(t, l)
	if n := testutil.ToFloat64(l.fallbacks); n == 0 {
		t.Fatal("no fallback counted")
	}
}
