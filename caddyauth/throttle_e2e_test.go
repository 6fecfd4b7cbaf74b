package caddyauth_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/redistest"
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/redislimit"
)

var throttledBody = regexp.MustCompile(`^\{"detail":"Request was throttled\. Expected available in ([0-9]+) seconds?\."\}$`)

// expectThrottled checks the 429 shape: DRF's message with the wait, and
// the same wait in Retry-After.
func expectThrottled(t *testing.T, r reply) {
	t.Helper()
	r.expect(t, http.StatusTooManyRequests)
	m := throttledBody.FindSubmatch(r.raw)
	if m == nil {
		t.Fatalf("429 body %s", r.raw)
	}
	if ra := r.header.Get("Retry-After"); ra != string(m[1]) || ra == "0" {
		t.Fatalf("Retry-After %q, body says %s", ra, m[1])
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("429 content type %q", ct)
	}
}

// The per-e-mail login throttle answers an unknown address and an existing
// one identically, and stops the right password too.
func TestLoginThrottlePerEmailE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "throttle login_email 2 5m\n\t\tthrottle login_ip 100 1m", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		const unknown = "nobody-at-all@world.com"
		login := func(email, password string) reply {
			return s.post("/auth/login/", map[string]string{"email": email, "password": password})
		}
		// The first attempts of both addresses at the same moment, so their
		// windows end in the same second.
		var wg sync.WaitGroup
		var first [2]reply
		for i, email := range []string{userEmail, unknown} {
			wg.Go(func() { first[i] = login(email, "wrong-password") })
		}
		wg.Wait()
		for _, r := range first {
			r.expect(t, 401)
		}
		login(userEmail, "wrong-password").expect(t, 401)
		login(unknown, "wrong-password").expect(t, 401)

		// Third attempt: throttled, whatever the address and password. A
		// refused attempt is not counted, so asking again is harmless.
		var a, b reply
		for range 5 {
			a = login(" PERSON1@World.com", userPass)
			b = login(unknown, "wrong-password")
			if a.header.Get("Retry-After") == b.header.Get("Retry-After") {
				break
			}
			time.Sleep(300 * time.Millisecond) // straddled a second boundary
		}
		expectThrottled(t, a)
		expectThrottled(t, b)
		if string(a.raw) != string(b.raw) || a.header.Get("Retry-After") != b.header.Get("Retry-After") {
			t.Fatalf("existing and unknown addresses answer differently:\n%s %v\n%s %v", a.raw, a.header, b.raw, b.header)
		}
		for _, h := range []string{"Content-Type", "Cache-Control", "Set-Cookie", "WWW-Authenticate"} {
			if a.header.Get(h) != b.header.Get(h) {
				t.Fatalf("header %s differs: %q vs %q", h, a.header.Get(h), b.header.Get(h))
			}
		}
		if a.str("access") != "" {
			t.Fatal("a throttled login issued a token")
		}
		if ra, _ := strconv.Atoi(a.header.Get("Retry-After")); ra < 290 || ra > 300 {
			t.Fatalf("Retry-After %d, want about 300", ra)
		}
		// Another address is not affected.
		login("someone-else@world.com", "wrong-password").expect(t, 401)
	})
}

// metric reads one sample of Caddy's /metrics on the admin endpoint (0
// when absent).
func metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + testAdmin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q", line)
			}
			return f
		}
	}
	return 0
}

// The per-address throttle counts every login from one client whatever
// the e-mail, and a forwarded-for header from an untrusted peer does not
// change the client.
func TestLoginThrottlePerIPE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), "throttle login_ip 3 1m", defaultBody))
	for i := range 3 {
		s.post("/auth/login/", map[string]string{"email": fmt.Sprintf("spray%d@world.com", i), "password": "Summer2024!"},
			fmt.Sprintf("X-Forwarded-For: 203.0.113.%d", i)).expect(t, 401)
	}
	expectThrottled(t, s.post("/auth/login/", map[string]string{"email": "spray9@world.com", "password": "Summer2024!"},
		"X-Forwarded-For: 198.51.100.7"))
	// Field errors still come first: nothing is counted for a bad body.
	s.post("/auth/login/", map[string]string{"email": ""}).expect(t, 400)
	if n := metric(t, `caddy_jwt_allauth_throttled_total{throttle="login_ip"}`); n != 1 {
		t.Fatalf("throttled metric %v", n)
	}
	if n := metric(t, `caddy_jwt_allauth_logins_total{result="throttled"}`); n != 1 {
		t.Fatalf("logins{throttled} %v", n)
	}
	if n := metric(t, `caddy_jwt_allauth_logins_total{result="failure"}`); n != 3 {
		t.Fatalf("logins{failure} %v", n)
	}
}

// Both verify endpoints share the per-address MFA throttle, checked before
// the challenge is looked up.
func TestMFAVerifyThrottleE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), "mfa_totp_mode optional\n\t\tthrottle mfa_verify_ip 3 1m", defaultBody))
	for range 2 {
		r := s.post("/auth/mfa/verify/", map[string]string{"challenge_id": "0123456789abcdef0123456789abcdef", "code": "123456"}).expect(t, 400)
		if r.str("detail") != "Challenge expired or invalid." {
			t.Fatalf("verify: %s", r.raw)
		}
	}
	s.post("/auth/mfa/verify-recovery/", map[string]string{"challenge_id": "0123456789abcdef0123456789abcdef", "recovery_code": "AAAA-BBBB"}).expect(t, 400)
	expectThrottled(t, s.post("/auth/mfa/verify/", map[string]string{"challenge_id": "x", "code": "123456"}))
	expectThrottled(t, s.post("/auth/mfa/verify-recovery/", map[string]string{"challenge_id": "x", "recovery_code": "x"}))
	if n := metric(t, `caddy_jwt_allauth_throttled_total{throttle="mfa_verify_ip"}`); n != 2 {
		t.Fatalf("throttled metric %v", n)
	}
}

// With Redis the counts outlive a reload: the config that takes over (as
// another node would) continues the count.
func TestRedisThrottleAcrossReloadE2E(t *testing.T) {
	redistest.URL(t)
	opts := fmt.Sprintf("rate_limit redis {env.%s} {\n\t\t\tkey_prefix e2e_%s:\n\t\t}\n\t\tthrottle login_email 3 5m", redistest.URLEnv, randomHex(t, 6))
	cf := caddyfile(backends()[0].store(t), opts, defaultBody)
	s := startCaddy(t, cf)
	body := map[string]string{"email": "reload@world.com", "password": "wrong-password"}
	s.post("/auth/login/", body).expect(t, 401)
	s.post("/auth/login/", body).expect(t, 401)
	loadCaddyfile(t, cf) // a forced reload: a new app, limiter and realm
	s.client.CloseIdleConnections()
	waitServing(t) // the old listener may still take a connection and drop it
	s.post("/auth/login/", body).expect(t, 401)
	expectThrottled(t, s.post("/auth/login/", body))
	if n := metric(t, "caddy_jwt_allauth_limiter_fallbacks_total"); n != 0 {
		t.Fatalf("%v fallbacks with Redis up", n)
	}
}

// When Redis stops, logins keep being answered (and throttled) from memory:
// no 5xx, no unthrottled door, and the fallback is counted.
func TestRedisOutageFallsBackE2E(t *testing.T) {
	redistest.URL(t)
	port, stop := redistest.Start(t, 0)
	opts := fmt.Sprintf("rate_limit redis redis://127.0.0.1:%d/0\n\t\tthrottle login_email 3 5m", port)
	s := startCaddy(t, caddyfile(backends()[0].store(t), opts, defaultBody))
	mustCreateUser(t, userEmail, userPass, 0)
	body := map[string]string{"email": userEmail, "password": "wrong-password"}
	s.post("/auth/login/", body).expect(t, 401)
	stop()
	for i := range 3 {
		start := time.Now()
		r := s.post("/auth/login/", body)
		if r.status != 401 {
			t.Fatalf("attempt %d during the outage: %d %s", i+1, r.status, r.raw)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("attempt during the outage took %v", d)
		}
	}
	expectThrottled(t, s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}))
	if n := metric(t, "caddy_jwt_allauth_limiter_fallbacks_total"); n < 4 {
		t.Fatalf("fallback metric %v, want at least 4", n)
	}
	// Other addresses still log in.
	mustCreateUser(t, "person2@world.com", userPass, 0)
	s.post("/auth/login/", map[string]string{"email": "person2@world.com", "password": userPass}).expect(t, 200)
}
