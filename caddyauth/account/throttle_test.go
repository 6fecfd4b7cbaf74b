package account

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/slogtest"
)

// throttleRealm is a throttler with a counting metrics sink and an audit
// log the test reads, on a clock the test moves.
func throttleRealm(t *testing.T, configured map[string]Throttle) (*throttler, *Clock, *slogtest.Records) {
	t.Helper()
	clk := new(Clock)
	logs := new(slogtest.Records)
	return &throttler{
		auditor: &auditor{
			auditLog: slog.New(logs),
			hashKey:  []byte("test-only-hash-key-0123456789abcdef"),
			metrics:  &countingMetrics{},
		},
		limiter:    NewMemoryLimiter(clk.Now),
		throttles:  buildThrottles(configured),
		ipv6Prefix: DefaultIPv6Prefix,
		logger:     slog.New(slog.DiscardHandler),
	}, clk, logs
}

// countingMetrics counts the throttle refusals by name.
type countingMetrics struct {
	noMetrics
	mu        sync.Mutex
	throttled map[string]int
}

func (m *countingMetrics) Throttle(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.throttled == nil {
		m.throttled = map[string]int{}
	}
	m.throttled[name]++
}

func TestThrottleKey(t *testing.T) {
	rl := &throttler{auditor: &auditor{hashKey: []byte("test-only-hash-key-0123456789abcdef")}}
	throttleKey := rl.throttleKey
	k := throttleKey(throttleLoginEmail, "alice@example.com")
	other := &throttler{auditor: &auditor{hashKey: []byte("another-test-hash-key-0123456789ab")}}
	if other.throttleKey(throttleLoginEmail, "alice@example.com") == k {
		t.Fatal("the key does not depend on the realm's hash key")
	}
	if k != throttleKey(throttleLoginEmail, "alice@example.com") {
		t.Fatal("key is not deterministic")
	}
	if strings.Contains(k, "alice") || strings.Contains(k, "example") {
		t.Fatalf("key %q shows the address", k)
	}
	if !strings.HasPrefix(k, "t:login_email:") || len(k) != len("t:login_email:")+32 {
		t.Fatalf("key %q", k)
	}
	for _, other := range []string{
		throttleKey(throttleLoginIP, "alice@example.com"),
		throttleKey(throttleLoginEmail, "bob@example.com"),
		throttleKey(throttlePasswordResetEmail, "alice@example.com"),
	} {
		if other == k {
			t.Fatalf("distinct throttles or keys share %q", k)
		}
	}
}

func TestBuildAndValidateThrottles(t *testing.T) {
	got := buildThrottles(map[string]Throttle{throttleLoginIP: {Limit: 100, Window: (time.Second)}, throttleLoginEmail: {}})
	if got[throttleLoginIP].Limit != 100 || got[throttleLoginEmail].Limit != 0 {
		t.Fatalf("overrides not applied: %+v", got)
	}
	if got[throttleMFAVerifyIP] != DefaultThrottles[throttleMFAVerifyIP] {
		t.Fatal("defaults lost")
	}
	if len(buildThrottles(nil)) != len(DefaultThrottles) {
		t.Fatal("defaults incomplete")
	}
	for _, tc := range []struct {
		in   map[string]Throttle
		want string
	}{
		{map[string]Throttle{"logins": {Limit: 1, Window: (time.Minute)}}, "unknown name"},
		{map[string]Throttle{throttleLoginIP: {Limit: -1}}, "negative"},
		{map[string]Throttle{throttleLoginIP: {Limit: 3}}, "window"},
		{map[string]Throttle{throttleLoginIP: {Limit: 0}}, ""},
		{map[string]Throttle{throttleLoginIP: {Limit: 3, Window: (time.Minute)}}, ""},
	} {
		err := ValidateThrottles(tc.in)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestThrottleRefusesWithDRFShape(t *testing.T) {
	rl, clk, logs := throttleRealm(t, map[string]Throttle{throttleLoginEmail: {Limit: 2, Window: (time.Minute)}})
	ctx := context.Background()
	for range 2 {
		if err := rl.throttle(ctx, throttleLoginEmail, "a@x.org"); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance((30*time.Second + time.Millisecond))
	err := rl.throttle(ctx, throttleLoginEmail, "a@x.org")
	var refusal *Refusal
	if !errors.As(err, &refusal) || refusal.Kind != Throttled || refusal.RetryAfter != 30 || !errors.Is(err, ErrRequestThrottled) {
		t.Fatalf("refusal %#v", err)
	}
	if refusal.Detail != "Request was throttled. Expected available in 30 seconds." || refusal.Code != "" || refusal.Fields != nil {
		t.Fatalf("refusal %+v", refusal)
	}
	if n := rl.metrics.(*countingMetrics).throttled[throttleLoginEmail]; n != 1 {
		t.Fatalf("throttled metric %v", n)
	}
	recs := logs.All()
	if len(recs) != 1 || recs[0].Level != slog.LevelDebug || recs[0].Attrs["throttle"] != throttleLoginEmail {
		t.Fatalf("audit lines %+v", recs)
	}
	for _, e := range recs {
		for k, v := range e.Attrs {
			if strings.Contains(v, "a@x.org") {
				t.Fatalf("log field %s shows the address", k)
			}
		}
	}
	// Another key is not affected; after the window the key is free.
	if err := rl.throttle(ctx, throttleLoginEmail, "b@x.org"); err != nil {
		t.Fatal(err)
	}
	clk.Advance((31 * time.Second))
	if err := rl.throttle(ctx, throttleLoginEmail, "a@x.org"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestThrottleOffEmptyKeyAndUnknownName(t *testing.T) {
	rl, _, _ := throttleRealm(t, map[string]Throttle{throttleLoginIP: {}})
	ctx := context.Background()
	for range 100 {
		if err := rl.throttle(ctx, throttleLoginIP, "192.0.2.1"); err != nil {
			t.Fatalf("a throttle turned off refused: %v", err)
		}
		if err := rl.throttle(ctx, throttleLoginEmail, ""); err != nil {
			t.Fatalf("an empty key was counted: %v", err)
		}
	}
	err := rl.throttle(ctx, "login", "x")
	if !errors.Is(err, ErrUnknownThrottle) || IsRefusal(err) {
		t.Fatalf("unknown throttle: %v", err)
	}
}

// Every flow the endpoints call throttleRequest with has its throttles.
func TestThrottleRequestFlows(t *testing.T) {
	rl, _, _ := throttleRealm(t, map[string]Throttle{
		throttleRegistrationIP:    {Limit: 3, Window: (time.Minute)},
		throttleRegistrationEmail: {Limit: 2, Window: (time.Minute)},
	})
	for _, flow := range []string{"registration", "password_reset", "verification_resend"} {
		if err := rl.throttleRequest(withOrigin(context.Background(), Origin{IP: "192.0.2.1"}), flow, "someone@example.com"); err != nil {
			t.Fatalf("flow %s: %v", flow, err)
		}
	}
	req := func(ip, email string) error {
		return rl.throttleRequest(withOrigin(context.Background(), Origin{IP: ip}), "registration", email)
	}
	// Per e-mail (normalised) across addresses, then per address.
	if req("192.0.2.2:1", " Alice@Example.com") != nil || req("192.0.2.3:1", "alice@example.com") != nil {
		t.Fatal("refused early")
	}
	if req("192.0.2.4:1", "ALICE@example.com ") == nil {
		t.Fatal("third attempt for one address allowed")
	}
	for i := range 3 {
		if err := req("192.0.2.9:1", "user"+string(rune('a'+i))+"@example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if req("192.0.2.9:1", "userz@example.com") == nil {
		t.Fatal("fourth attempt from one address allowed")
	}
	// IPv6 clients in one /64 are one client.
	for i := range 3 {
		if err := req("[2001:db8:1:2::"+string(rune('a'+i))+"]:1", "v6"+string(rune('a'+i))+"@example.com"); err != nil {
			t.Fatal(err)
		}
	}
	if req("[2001:db8:1:2:ffff::1]:1", "v6z@example.com") == nil {
		t.Fatal("a fourth address of the same /64 was not counted with the others")
	}
	if err := req("[2001:db8:1:3::1]:1", "v6y@example.com"); err != nil {
		t.Fatalf("the next /64 was counted with it: %v", err)
	}
}

func TestClientKey(t *testing.T) {
	rl := &throttler{ipv6Prefix: DefaultIPv6Prefix}
	for in, want := range map[string]string{
		"192.0.2.1":                      "192.0.2.1",
		"192.0.2.1:4242":                 "192.0.2.1",
		"::ffff:192.0.2.1":               "192.0.2.1",
		"2001:db8:aa:bb:1:2:3:4":         "2001:db8:aa:bb::/64",
		"[2001:db8:aa:bb:ffff::9]:443":   "2001:db8:aa:bb::/64",
		"fe80::1%eth0":                   "fe80::/64",
		"2001:db8:aa:bc:1:2:3:4":         "2001:db8:aa:bc::/64",
		"not an address":                 "not an address",
		"2001:db8:aa:bb:1:2:3:4:5":       "2001:db8:aa:bb:1:2:3:4:5",
		"2001:0db8:00aa:00bb:0:0:0:0001": "2001:db8:aa:bb::/64",
	} {
		if got := rl.clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
	rl.ipv6Prefix = 48
	if got := rl.clientKey("2001:db8:aa:bb:1:2:3:4"); got != "2001:db8:aa::/48" {
		t.Errorf("with prefix 48: %q", got)
	}
	rl.ipv6Prefix = 128
	if got := rl.clientKey("2001:db8:aa:bb:1:2:3:4"); got != "2001:db8:aa:bb:1:2:3:4/128" {
		t.Errorf("with prefix 128: %q", got)
	}
	if got := rl.clientKey("192.0.2.1"); got != "192.0.2.1" {
		t.Errorf("IPv4 with an IPv6 prefix set: %q", got)
	}
}

// login_email counts failures: an attempt is counted before the check and
// taken back when the password matched, so successes never lock an
// address, attempts in flight count (a parallel burst stops at the
// limit), and a locked address refuses before any hash.
func TestCountFailureSettle(t *testing.T) {
	rl, clk, _ := throttleRealm(t, map[string]Throttle{throttleLoginEmail: {Limit: 3, Window: (time.Minute)}})
	ctx := context.Background()
	for i := range 20 {
		f, err := rl.countFailure(ctx, "Owner@Example.com")
		if err != nil {
			t.Fatalf("success %d refused: %v", i+1, err)
		}
		rl.settle(ctx, f, false)
	}
	var inFlight []passwordFailure
	for range 3 {
		f, err := rl.countFailure(ctx, "owner@example.com ")
		if err != nil {
			t.Fatal(err)
		}
		inFlight = append(inFlight, f)
	}
	if _, err := rl.countFailure(ctx, "owner@example.com"); err == nil {
		t.Fatal("a fourth attempt in flight was let through")
	}
	// Two match, one fails: one failure stays counted.
	rl.settle(ctx, inFlight[0], false)
	rl.settle(ctx, inFlight[1], false)
	rl.settle(ctx, inFlight[2], true)
	for range 2 {
		f, err := rl.countFailure(ctx, "owner@example.com")
		if err != nil {
			t.Fatal(err)
		}
		rl.settle(ctx, f, true)
	}
	_, err := rl.countFailure(ctx, "owner@example.com")
	var refusal *Refusal
	if !errors.As(err, &refusal) || refusal.Kind != Throttled {
		t.Fatalf("after three failures: %v", err)
	}
	if _, err := rl.countFailure(ctx, "someone-else@example.com"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	clk.Advance((time.Minute + time.Second))
	if _, err := rl.countFailure(ctx, "owner@example.com"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestAuditLine(t *testing.T) {
	rl, _, logs := throttleRealm(t, nil)
	ctx := withOrigin(context.Background(), Origin{IP: "192.0.2.7"})
	rl.audit(ctx, auditLoginFailed, 0, slog.String("reason", "credentials"), rl.emailHash(" Alice@Example.com"))
	rl.audit(ctx, auditPasswordChanged, 7, slog.String("how", "change"))
	all := logs.All()
	if len(all) != 2 || all[0].Level != slog.LevelInfo || all[0].Event != auditLoginFailed {
		t.Fatalf("audit lines %+v", all)
	}
	f := all[0].Attrs
	if f["event"] != auditLoginFailed || f["email_hash"] == "" || f["user_id"] != "" || f["client_ip"] != "192.0.2.7" {
		t.Fatalf("fields %v", f)
	}
	if h := rl.emailHash("alice@example.com").Value.String(); h != f["email_hash"] || len(h) != 16 {
		t.Fatalf("hash of the normalised address differs: %s vs %v", h, f["email_hash"])
	}
	if g := all[1].Attrs; g["user_id"] != "7" || g["how"] != "change" {
		t.Fatalf("fields %v", g)
	}
}
