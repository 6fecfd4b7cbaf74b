package account

import (
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
)

// defaultHashWait is how long a caller waits for a free hashing slot.
const defaultHashWait = 2 * time.Second

// ErrHasherBusy is returned when no hashing slot became free within the
// hasher's maximum wait. The API answers it with 503.
var ErrHasherBusy = errors.New("too many password hashes in progress")

// Hasher hashes and verifies passwords, with at most 2 x GOMAXPROCS
// slots taken at once; further callers wait up to maxWait for a slot. Of
// the callers holding a slot, GOMAXPROCS hash at once and the others wait
// for one of them to finish: argon2id is pure computation, so more at once
// would not finish more per second, and each running hash holds 19 MiB,
// so this halves what the hashes hold at their peak.
//
// Each hash names its owners: the client and the account it is for (see
// core.hashOwners). No owner holds more than share slots at once: a
// caller whose client or account is at its share waits, even with slots
// free, while callers of other owners get them. A freed slot goes to the
// waiter whose owners hold the fewest slots, the oldest first. So a flood
// from one client or against one account waits out its own queue and is
// refused (503), and everyone else finds a slot.
type Hasher struct {
	rand    io.Reader
	maxWait time.Duration
	slots   int           // slots taken at once
	share   int           // slots one owner may hold at once
	running chan struct{} // one token per hash running, GOMAXPROCS

	mu    sync.Mutex
	busy  int            // slots in use
	held  map[string]int // slots in use per owner
	queue []*hashWaiter  // callers waiting, oldest first

	observeWait func(seconds float64)
}

// hashWaiter is a caller waiting for a slot; granted is closed when one is
// handed to it.
type hashWaiter struct {
	owners  []string
	granted chan struct{}
}

// fairShare is how many slots one owner may hold: half of them (GOMAXPROCS),
// at least one. GOMAXPROCS hashes at once already keep every core busy
// (argon2id is pure computation), the slots beyond only queue, so an
// owner held to half loses no throughput (a single client still gets the
// whole machine when alone), while the other half is always open to
// everyone else.
func fairShare(slots int) int {
	return max(1, slots/2)
}

// NewHasher returns a hasher that draws salts from rand. A maxWait of zero
// or less means the default of 2 s. observeWait, when not nil, receives
// every wait for a slot in seconds.
func NewHasher(rand io.Reader, maxWait time.Duration, observeWait func(seconds float64)) *Hasher {
	if maxWait <= 0 {
		maxWait = defaultHashWait
	}
	procs := runtime.GOMAXPROCS(0)
	slots := 2 * procs
	return &Hasher{
		rand:    rand,
		maxWait: maxWait,
		slots:   slots,
		share:   fairShare(slots),
		running: make(chan struct{}, procs),
		held:    map[string]int{},

		observeWait: observeWait,
	}
}

// acquire takes a hashing slot for owners (empty names are ignored),
// waiting at most h.maxWait. The wait is a duration, not a point in time,
// so it uses a real timer rather than the realm's clock.
func (h *Hasher) acquire(ctx context.Context, owners []string) error {
	h.mu.Lock()
	// Nobody who could take a free slot is left waiting (see grant), so a
	// caller that can take one goes ahead.
	if h.busy < h.slots && h.load(owners) < h.share {
		h.take(owners)
		h.mu.Unlock()
		h.observe(0)
		return nil
	}
	w := &hashWaiter{owners: owners, granted: make(chan struct{})}
	h.queue = append(h.queue, w)
	h.mu.Unlock()

	start := time.Now()
	defer func() { h.observe(time.Since(start).Seconds()) }()
	timer := time.NewTimer(h.maxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.granted:
		return nil
	case <-timer.C:
		err = ErrHasherBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-w.granted:
		return nil // handed a slot while giving up: use it
	default:
	}
	h.queue = slices.DeleteFunc(h.queue, func(q *hashWaiter) bool { return q == w })
	return err
}

// load is the most slots any of owners holds; h.mu is held.
func (h *Hasher) load(owners []string) int {
	n := 0
	for _, o := range owners {
		if o != "" {
			n = max(n, h.held[o])
		}
	}
	return n
}

// take books a slot for owners; h.mu is held.
func (h *Hasher) take(owners []string) {
	h.busy++
	for _, o := range owners {
		if o != "" {
			h.held[o]++
		}
	}
}

// release frees the slot of owners and hands out what can be handed out.
func (h *Hasher) release(owners []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busy--
	for _, o := range owners {
		if o == "" {
			continue
		}
		if h.held[o]--; h.held[o] <= 0 {
			delete(h.held, o)
		}
	}
	h.grant()
}

// grant gives free slots to waiters below their share, those whose owners
// hold the fewest first, then the oldest; h.mu is held.
func (h *Hasher) grant() {
	for h.busy < h.slots {
		next, least := -1, h.share
		for i, w := range h.queue {
			if n := h.load(w.owners); n < least {
				next, least = i, n
			}
		}
		if next < 0 {
			return
		}
		w := h.queue[next]
		h.queue = slices.Delete(h.queue, next, next+1)
		h.take(w.owners)
		close(w.granted)
	}
}

func (h *Hasher) observe(seconds float64) {
	if h.observeWait != nil {
		h.observeWait(seconds)
	}
}

// Hold takes one hashing slot for owners (see acquire), then waits for
// one of the hashes running to finish when GOMAXPROCS are (a wait bounded
// by the slots: at most as many holders wait as hash), until release is
// called: every hash and check runs in one. A caller whose ctx ends
// while it waits gives its slot back and gets ctx's error; with ctx
// already ended, Hold still takes what is free without waiting.
func (h *Hasher) Hold(ctx context.Context, owners ...string) (release func(), err error) {
	if err := h.acquire(ctx, owners); err != nil {
		return nil, err
	}
	select {
	case h.running <- struct{}{}:
	default:
		select {
		case h.running <- struct{}{}:
		case <-ctx.Done():
			h.release(owners)
			return nil, ctx.Err()
		}
	}
	return func() {
		<-h.running
		h.release(owners)
	}, nil
}

// Hash returns the argon2id PHC string of password. owners are whom the
// hash is for (see acquire); none for a command-line tool.
func (h *Hasher) Hash(ctx context.Context, password string, owners ...string) (string, error) {
	release, err := h.Hold(ctx, owners...)
	if err != nil {
		return "", err
	}
	defer release()
	return passwords.Hash(password, h.rand)
}

// verify is passwords.Verify in a hashing slot. owners are whom the check
// is for (see acquire). The only errors are ErrHasherBusy and the
// context's.
func (h *Hasher) verify(ctx context.Context, password, encoded string, owners ...string) (ok, needsRehash bool, err error) {
	release, err := h.Hold(ctx, owners...)
	if err != nil {
		return false, false, err
	}
	defer release()
	ok, needsRehash = passwords.Verify(password, encoded)
	return ok, needsRehash, nil
}

// dummyVerify is passwords.VerifyDummy in a hashing slot.
func (h *Hasher) dummyVerify(ctx context.Context, password string, owners ...string) error {
	release, err := h.Hold(ctx, owners...)
	if err != nil {
		return err
	}
	defer release()
	passwords.VerifyDummy(password)
	return nil
}
