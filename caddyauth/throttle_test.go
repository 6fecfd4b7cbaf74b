package caddyauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// throttleRealm is a realm with just what throttles, metrics and the audit
// log need, on a clock the test moves.
func throttleRealm(t *testing.T, configured map[string]Throttle) (*realm, *clock, *observer.ObservedLogs) {
	t.Helper()
	clk := new(clock)
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	return &realm{
		limiter:   account.NewMemoryLimiter(clk.now),
		now:       clk.now,
		clock:     clk,
		throttles: buildThrottles(configured),
		metrics:   m,
		auditLog:  zap.New(core).Named("audit"),
		logger:    zap.NewNop(),
	}, clk, logs
}

func TestThrottleKey(t *testing.T) {
	rl := &realm{hashKey: []byte("test-only-hash-key-0123456789abcdef")}
	throttleKey := rl.throttleKey
	k := throttleKey(throttleLoginEmail, "alice@example.com")
	other := &realm{hashKey: []byte("another-test-hash-key-0123456789ab")}
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
	got := buildThrottles(map[string]Throttle{throttleLoginIP: {Limit: 100, Window: caddy.Duration(time.Second)}, throttleLoginEmail: {}})
	if got[throttleLoginIP].Limit != 100 || got[throttleLoginEmail].Limit != 0 {
		t.Fatalf("overrides not applied: %+v", got)
	}
	if got[throttleMFAVerifyIP] != defaultThrottles[throttleMFAVerifyIP] {
		t.Fatal("defaults lost")
	}
	if len(buildThrottles(nil)) != len(defaultThrottles) {
		t.Fatal("defaults incomplete")
	}
	for _, tc := range []struct {
		in   map[string]Throttle
		want string
	}{
		{map[string]Throttle{"logins": {Limit: 1, Window: caddy.Duration(time.Minute)}}, "unknown name"},
		{map[string]Throttle{throttleLoginIP: {Limit: -1}}, "negative"},
		{map[string]Throttle{throttleLoginIP: {Limit: 3}}, "window"},
		{map[string]Throttle{throttleLoginIP: {Limit: 0}}, ""},
		{map[string]Throttle{throttleLoginIP: {Limit: 3, Window: caddy.Duration(time.Minute)}}, ""},
	} {
		err := validateThrottles(tc.in)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestThrottleRefusesWithDRFShape(t *testing.T) {
	rl, clk, logs := throttleRealm(t, map[string]Throttle{throttleLoginEmail: {Limit: 2, Window: caddy.Duration(time.Minute)}})
	ctx := context.Background()
	for range 2 {
		if err := rl.throttle(ctx, throttleLoginEmail, "a@x.org"); err != nil {
			t.Fatal(err)
		}
	}
	clk.offset.Add(int64(30*time.Second + time.Millisecond))
	err := rl.throttle(ctx, throttleLoginEmail, "a@x.org")
	w := httptest.NewRecorder()
	if werr := writeError(w, zap.NewNop(), rl.metrics, err); werr != nil {
		t.Fatal(werr)
	}
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "30" {
		t.Fatalf("status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if body := w.Body.String(); body != `{"detail":"Request was throttled. Expected available in 30 seconds."}` {
		t.Fatalf("body %s", body)
	}
	if n := testutil.ToFloat64(rl.metrics.throttled.WithLabelValues(throttleLoginEmail)); n != 1 {
		t.Fatalf("throttled metric %v", n)
	}
	for _, e := range logs.All() {
		for k, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "a@x.org") {
				t.Fatalf("log field %s shows the address", k)
			}
		}
	}
	// Another key is not affected; after the window the key is free.
	if err := rl.throttle(ctx, throttleLoginEmail, "b@x.org"); err != nil {
		t.Fatal(err)
	}
	clk.offset.Add(int64(31 * time.Second))
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
	if !errors.Is(err, errUnknownThrottle) {
		t.Fatalf("unknown throttle: %v", err)
	}
	if werr := writeError(httptest.NewRecorder(), zap.NewNop(), nil, err); werr == nil || !strings.Contains(werr.Error(), "unknown throttle") {
		t.Fatalf("unknown throttle answered %v, want a 500", werr)
	}
}

// Every flow the endpoints call throttleRequest with has its throttles.
func TestThrottleRequestFlows(t *testing.T) {
	rl, _, _ := throttleRealm(t, map[string]Throttle{
		throttleRegistrationIP:    {Limit: 3, Window: caddy.Duration(time.Minute)},
		throttleRegistrationEmail: {Limit: 2, Window: caddy.Duration(time.Minute)},
	})
	for _, flow := range []string{"registration", "password_reset", "verification_resend"} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		if err := rl.throttleRequest(r, flow, "someone@example.com"); err != nil {
			t.Fatalf("flow %s: %v", flow, err)
		}
	}
	req := func(ip, email string) error {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = ip
		return rl.throttleRequest(r, "registration", email)
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
	rl := &realm{}
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
	rl, clk, _ := throttleRealm(t, map[string]Throttle{throttleLoginEmail: {Limit: 3, Window: caddy.Duration(time.Minute)}})
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
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != http.StatusTooManyRequests {
		t.Fatalf("after three failures: %v", err)
	}
	if _, err := rl.countFailure(ctx, "someone-else@example.com"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	clk.offset.Add(int64(time.Minute + time.Second))
	if _, err := rl.countFailure(ctx, "owner@example.com"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestThrottleCaddyfile(t *testing.T) {
	in := `jwt_allauth {
		throttle login_ip 100 1m
		throttle login_email off
		throttle mfa_verify_ip 5 30s
	}`
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	want := map[string]Throttle{
		throttleLoginIP:     {Limit: 100, Window: caddy.Duration(time.Minute)},
		throttleLoginEmail:  {},
		throttleMFAVerifyIP: {Limit: 5, Window: caddy.Duration(30 * time.Second)},
	}
	if len(a.Throttles) != len(want) {
		t.Fatalf("throttles %+v", a.Throttles)
	}
	for k, v := range want {
		if a.Throttles[k] != v {
			t.Fatalf("%s = %+v, want %+v", k, a.Throttles[k], v)
		}
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"throttle login_ip",
		"throttle login_ip 10",
		"throttle login_ip ten 1m",
		"throttle login_ip -1 1m",
		"throttle login_ip 10 0s",
		"throttle login_ip 10 soon",
		"throttle login 10 1m",
		"throttle login_ip 10 1m extra",
		"throttle login_ip 10 1m\nthrottle login_ip 20 1m",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n" + bad + "\n}")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.login(resultSuccess)
	if n := testutil.ToFloat64(b.logins.WithLabelValues(resultSuccess)); n != 1 {
		t.Fatalf("the second provisioning does not share the counter: %v", n)
	}
	var nilMetrics *metrics
	nilMetrics.login(resultSuccess) // must not panic
	nilMetrics.unavailable(errHasherBusy)
}

func TestAuditLine(t *testing.T) {
	rl, _, logs := throttleRealm(t, nil)
	rl.audit(context.Background(), auditLoginFailed, 0, zap.String("reason", "credentials"), rl.emailHash(" Alice@Example.com"))
	rl.auditPasswordChanged(context.Background(), 7, "change")
	all := logs.All()
	if len(all) != 2 || all[0].LoggerName != "audit" || all[0].Level != zapcore.InfoLevel {
		t.Fatalf("audit lines %+v", all)
	}
	f := all[0].ContextMap()
	if f["event"] != auditLoginFailed || f["email_hash"] == "" || f["user_id"] != nil {
		t.Fatalf("fields %v", f)
	}
	if all[0].ContextMap()["email_hash"] != logs.All()[0].ContextMap()["email_hash"] {
		t.Fatal("unstable hash")
	}
	if h := rl.emailHash("alice@example.com").String; h != f["email_hash"] {
		t.Fatalf("hash of the normalised address differs: %s vs %v", h, f["email_hash"])
	}
	if g := all[1].ContextMap(); g["user_id"] != "7" || g["how"] != "change" {
		t.Fatalf("fields %v", g)
	}
}

func TestThrottleIPv6PrefixOption(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n\tthrottle_ipv6_prefix 48\n}")); err != nil {
		t.Fatal(err)
	}
	if a.ThrottleIPv6Prefix == nil || *a.ThrottleIPv6Prefix != 48 {
		t.Fatalf("throttle_ipv6_prefix %v", a.ThrottleIPv6Prefix)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{0, 129, -1} {
		a.ThrottleIPv6Prefix = &bad
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "throttle_ipv6_prefix") {
			t.Errorf("%d: %v", bad, err)
		}
	}
}
