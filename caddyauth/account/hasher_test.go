package account

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

func testHasher(maxWait time.Duration) *Hasher {
	return NewHasher(testrand.New(9), maxWait, nil)
}

func TestHasherConcurrencyBound(t *testing.T) {
	h := testHasher(30 * time.Millisecond)
	if h.slots < 2 {
		t.Fatalf("only %d slots", h.slots)
	}
	ctx := context.Background()
	// Occupy every slot, as that many slow hashes would.
	for range h.slots {
		if err := h.acquire(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := h.Hash(ctx, "password"); !errors.Is(err, ErrHasherBusy) {
		t.Fatalf("hash: got %v, want ErrHasherBusy", err)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Fatalf("gave up after %s, before the maximum wait", waited)
	}
	if _, _, err := h.verify(ctx, "pw", ""); !errors.Is(err, ErrHasherBusy) {
		t.Fatalf("verify: got %v", err)
	}
	if err := h.dummyVerify(ctx, "pw"); !errors.Is(err, ErrHasherBusy) {
		t.Fatalf("dummyVerify: got %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Hash(cctx, "pw"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: got %v", err)
	}
	if len(h.queue) != 0 {
		t.Fatalf("%d callers that gave up are still queued", len(h.queue))
	}

	// A waiter gets the slot released within its wait.
	h.maxWait = 5 * time.Second
	go func() {
		time.Sleep(20 * time.Millisecond)
		h.release(nil)
	}()
	if _, err := h.Hash(ctx, "password", "c:192.0.2.1"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if h.busy != h.slots-1 || len(h.held) != 0 {
		t.Fatalf("slot leaked: %d of %d in use, held %v", h.busy, h.slots, h.held)
	}
}

// TestHasherRunningWait: a holder past the GOMAXPROCS that hash at once
// waits for one of them, gives its slot back when its context ends first,
// and hashes once one finishes.
func TestHasherRunningWait(t *testing.T) {
	h := testHasher(time.Second)
	procs := cap(h.running)
	var running []func()
	for range procs {
		release, err := h.Hold(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		running = append(running, release)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Hold(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hold with an ended context and every runner busy: %v", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.Hold(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hold past its deadline: %v", err)
	}
	if h.busy != procs {
		t.Fatalf("%d slots in use after two holders gave up, want %d", h.busy, procs)
	}
	got := make(chan error, 1)
	go func() {
		release, err := h.Hold(context.Background())
		if err == nil {
			release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Hold did not wait for a runner: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	running[0]()
	if err := <-got; err != nil {
		t.Fatalf("Hold after a runner finished: %v", err)
	}
	for _, release := range running[1:] {
		release()
	}
	if h.busy != 0 || len(h.running) != 0 {
		t.Fatalf("%d slots and %d runners left in use", h.busy, len(h.running))
	}
}

// waitQueued waits until n callers wait for a slot of h.
func waitQueued(t *testing.T, h *Hasher, n int) {
	t.Helper()
	for range 500 {
		h.mu.Lock()
		q := len(h.queue)
		h.mu.Unlock()
		if q == n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%d callers never queued", n)
}

// The fair-share rule, on 4 slots (share 2): an owner at its share waits
// though slots are free while other owners get them; a freed slot goes to
// the waiter whose owners hold the fewest, then to the oldest; a waiter
// whose client or account is at its share stays queued with a slot free.
func TestHasherFairShare(t *testing.T) {
	h := testHasher(5 * time.Second)
	h.slots, h.share = 4, fairShare(4)
	if h.share != 2 || fairShare(2) != 1 || fairShare(1) != 1 {
		t.Fatalf("fair share of 4, 2, 1 slots: %d, %d, %d", h.share, fairShare(2), fairShare(1))
	}
	ctx := context.Background()
	now := func(owners ...string) {
		t.Helper()
		h.mu.Lock()
		free := h.busy < h.slots && h.load(owners) < h.share
		h.mu.Unlock()
		if !free {
			t.Fatalf("%v would wait", owners)
		}
		if err := h.acquire(ctx, owners); err != nil {
			t.Fatal(err)
		}
	}
	order := make(chan string, 8)
	queue := func(who string, owners ...string) {
		t.Helper()
		h.mu.Lock()
		n := len(h.queue)
		h.mu.Unlock()
		go func() {
			if err := h.acquire(ctx, owners); err != nil {
				order <- who + ": " + err.Error()
				return
			}
			order <- who
		}()
		waitQueued(t, h, n+1)
	}
	next := func(want string) {
		t.Helper()
		if got := <-order; got != want {
			t.Fatalf("the slot went to %q, want %q", got, want)
		}
	}
	nothing := func() {
		t.Helper()
		select {
		case got := <-order:
			t.Fatalf("%q got a slot", got)
		case <-time.After(20 * time.Millisecond):
		}
	}
	flood := []string{"client:198.51.100.7", "email:victim@example.com"}
	now(flood...)
	now(flood...)
	queue("flood", flood...) // two slots free, and it waits
	now("client:203.0.113.9", "email:someone@example.com")
	queue("flood client, other account", flood[0], "email:third@example.com")
	queue("other client, flooded account", "client:203.0.113.10", flood[1])
	now("client:203.0.113.11", "email:filler@example.com")
	queue("fresh", "client:203.0.113.12", "email:fresh@example.com") // no slot free
	nothing()

	h.release(flood)
	next("fresh") // holds none: ahead of the three holding one
	h.release([]string{"client:203.0.113.9", "email:someone@example.com"})
	next("flood") // all hold one: the oldest
	h.release([]string{"client:203.0.113.11", "email:filler@example.com"})
	nothing() // the flood's client and account are at their share again
	if h.busy != 3 || len(h.queue) != 2 {
		t.Fatalf("busy %d, queued %d", h.busy, len(h.queue))
	}
	now("client:203.0.113.13")
	h.release(flood)
	next("flood client, other account")
	h.release(flood)
	next("other client, flooded account")
}
