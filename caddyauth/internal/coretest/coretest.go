// Package coretest builds an account core on a SQLite database in a
// test's temporary directory, with a clock the test moves, a seeded
// random source, and an outbox and an audit log the test reads: the
// core's flows run with no HTTP and no Caddy around them.
package coretest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/slogtest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passkey"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/relyingparty"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlite"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/storetest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Realm is a core and what a test reads of it.
type Realm struct {
	*account.Service
	Clock  *account.Clock
	Store  account.Store
	Outbox *Outbox
	Audit  *slogtest.Records
}

// Option changes what a realm's core is built from.
type Option func(testing.TB, *account.Deps)

// The relying party of WithWebAuthn: pages at PasskeyOrigin, RP ID
// PasskeyRPID, for which a software authenticator signs.
const (
	PasskeyRPID   = "localhost"
	PasskeyOrigin = "http://localhost:8443"
)

// WithWebAuthn gives the core the realm's WebAuthn as the adapter builds
// it (relyingparty over the passkey leaf), for pages at PasskeyOrigin;
// the passkey mode is the Config's.
func WithWebAuthn(t testing.TB, d *account.Deps) {
	t.Helper()
	rp, err := relyingparty.New(passkey.Config{RPID: PasskeyRPID, Origins: []string{PasskeyOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	d.WebAuthn = rp
}

// New builds a core with cfg on a fresh SQLite database, with what opts
// add. The core gives zero durations and modes their defaults; a zero
// count or TOTP skew is a setting (no limit, no step either side), as the
// core takes it.
func New(t testing.TB, cfg account.Config, opts ...Option) *Realm {
	t.Helper()
	// The store module opens and migrates the database; nothing else of
	// Caddy runs.
	st := &sqlite.Store{Path: filepath.Join(t.TempDir(), "auth.db")}
	storetest.Provision(t, st)
	seed, err := tokens.GenerateEd25519Key(testrand.New(1))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.NewEd25519(seed, tokens.Config{Issuer: "caddy-jwt-allauth", Audience: "caddy-jwt-allauth"})
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TOTPIssuer == "" {
		cfg.TOTPIssuer = "JWT-Allauth" // the adapter's default; the core keeps "" as a setting
	}
	clk := new(account.Clock)
	rl := &Realm{Clock: clk, Store: st, Outbox: new(Outbox), Audit: new(slogtest.Records)}
	deps := account.Deps{
		Store:   st,
		Limiter: account.NewMemoryLimiter(clk.Now),
		Keys:    keys,
		Secrets: box,
		HashKey: []byte("test-only-hash-key-0123456789abcdef"),
		Hasher:  account.NewHasher(&lockedReader{r: testrand.New(2)}, time.Second, nil),
		Outbox:  rl.Outbox,
		Audit:   slog.New(rl.Audit),
		Clock:   clk,
		Rand:    &lockedReader{r: testrand.New(3)},
	}
	for _, o := range opts {
		o(t, &deps)
	}
	rl.Service, err = account.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return rl
}

// lockedReader makes a seeded random source safe for the concurrent flows
// of a race test, as the system's is.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// Outbox keeps the mails the core sends.
type Outbox struct {
	mu    sync.Mutex
	mails []account.Mail
}

// Send keeps m.
func (o *Outbox) Send(m account.Mail) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.mails = append(o.mails, m)
}

// Mails are the mails sent so far, oldest first.
func (o *Outbox) Mails() []account.Mail {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.mails)
}

// Last is the newest mail of kind to to, and whether there is one.
func (o *Outbox) Last(kind, to string) (account.Mail, bool) {
	ms := o.Mails()
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Kind == kind && ms[i].To == to {
			return ms[i], true
		}
	}
	return account.Mail{}, false
}

// TOTPCode computes the RFC 6238 code (SHA-1, 30 s, six digits) of the
// base32 secret at now, independently of the code under test.
func TOTPCode(t testing.TB, secret string, now time.Time) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(strings.ToUpper(secret), "="))
	if err != nil {
		t.Fatalf("secret %q: %v", secret, err)
	}
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(now.Unix()/30))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", v%1_000_000)
}
