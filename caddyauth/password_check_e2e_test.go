package caddyauth_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/redistest"
)

// withTrustedLoopback makes the test client a trusted proxy, so that its
// X-Forwarded-For names the client (security_e2e_test.go shows that an
// untrusted peer's is ignored).
func withTrustedLoopback(cf string) string {
	return strings.Replace(cf, "\tgrace_period 5s\n", "\tgrace_period 5s\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", 1)
}

// login_email counts failures, not attempts: an owner signing in more
// often than the limit is never throttled, while that many wrong passwords
// lock a real and an unknown address alike; a parallel burst of guesses
// stops at the limit, because attempts are counted before the hash.
func TestLoginCountsFailuresPerAddressE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		// login_email keeps its default, 10 per 15m.
		s := startCaddy(t, caddyfile(store, "throttle login_ip 200 1m", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		const unknown = "nobody-at-all@world.com"
		login := func(email, password string) reply {
			return s.post("/auth/login/", map[string]string{"email": email, "password": password})
		}
		for i := range 15 {
			if r := login(userEmail, userPass); r.status != 200 {
				t.Fatalf("successful login %d answered %d: %s", i+1, r.status, r.raw)
			}
		}
		for range 10 {
			login(userEmail, "wrong-password").expect(t, 401)
			login(unknown, "wrong-password").expect(t, 401)
		}
		a := login(" PERSON1@World.com", userPass)
		b := login(unknown, "wrong-password")
		expectThrottled(t, a)
		expectThrottled(t, b)
		// The same answer (expectThrottled checked the body) but for the
		// wait, which counts from each address's own first failure: a
		// second apart on a slow machine.
		ra, _ := strconv.Atoi(a.header.Get("Retry-After"))
		rb, _ := strconv.Atoi(b.header.Get("Retry-After"))
		if ra-rb > 2 || rb-ra > 2 {
			t.Fatalf("existing and unknown addresses answer differently:\n%s\n%s", a.raw, b.raw)
		}
		// Another address is not affected.
		mustCreateUser(t, "person2@world.com", userPass, 0)
		login("person2@world.com", userPass).expect(t, 200)
	})
}

// A parallel burst of guesses for one address stops at the limit:
// attempts are counted before the hash, so they see each other.
func TestLoginFailureBurstE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), "throttle login_email 3 15m\n\t\tthrottle login_ip 200 1m", defaultBody))
	var wg sync.WaitGroup
	statuses := make([]int, 12)
	for i := range statuses {
		wg.Go(func() {
			r, err := s.try("POST", "/auth/login/", map[string]string{"email": "burst@world.com", "password": "wrong-password"})
			if err == nil {
				statuses[i] = r.status
			}
		})
	}
	wg.Wait()
	n := map[int]int{}
	for _, st := range statuses {
		n[st]++
	}
	if n[401] != 3 || n[429] != 9 {
		t.Fatalf("parallel guesses answered %v, want 3 x 401 and 9 x 429", n)
	}
}

// passwordChangeBody is a password change with old as the current password.
func passwordChangeBody(old string) map[string]string {
	return map[string]string{"old_password": old, "new_password1": "An0ther-Passw0rd", "new_password2": "An0ther-Passw0rd"}
}

// Wrong passwords sent to /password/change/ and /mfa/deactivate/ with a
// valid token are throttled per user (password_check_user, both endpoints
// together), count toward the address's login failures (login_email: then
// the login is locked too, and the check is refused before any hash), and
// each writes a password_check_failed audit line without the address.
func TestPasswordChecksThrottledPerUserE2E(t *testing.T) {
	cf, audit := withAuditLog(t, caddyfile(backends()[0].store(t),
		"mfa_totp_mode optional\n\t\tthrottle password_check_user 3 15m\n\t\tthrottle login_email 5 15m\n\t\tthrottle login_ip 100 1m", defaultBody))
	s := startCaddy(t, cf)
	u1 := mustCreateUser(t, userEmail, userPass, 0)
	u2 := mustCreateUser(t, "person2@world.com", userPass, 0)
	access, _ := s.login(userEmail, userPass)
	other, _ := s.login("person2@world.com", userPass)

	r := s.post("/auth/password/change/", passwordChangeBody("wrong-one"), bearer(access)).expect(t, 400)
	if r.fieldMsg("old_password") != "Your old password was entered incorrectly. Please enter it again." {
		t.Fatalf("wrong old password: %s", r.raw)
	}
	s.post("/auth/password/change/", passwordChangeBody("wrong-two"), bearer(access)).expect(t, 400)
	if r := s.post("/auth/mfa/deactivate/", map[string]string{"password": "wrong-three"}, bearer(access)).expect(t, 400); r.str("detail") != "Invalid password." {
		t.Fatalf("deactivate: %s", r.raw)
	}
	// The user's fourth check is refused, right password or not, on
	// either endpoint; another user from the same client is not.
	expectThrottled(t, s.post("/auth/password/change/", passwordChangeBody(userPass), bearer(access)))
	expectThrottled(t, s.post("/auth/mfa/deactivate/", map[string]string{"password": userPass}, bearer(access)))
	s.post("/auth/password/change/", passwordChangeBody("wrong-four"), bearer(other)).expect(t, 400)

	// Three failures of person1 count toward login_email (5): two more
	// wrong logins lock the address, and the right password is refused.
	s.post("/auth/login/", map[string]string{"email": userEmail, "password": "wrong-login"}).expect(t, 401)
	s.post("/auth/login/", map[string]string{"email": userEmail, "password": "wrong-login"}).expect(t, 401)
	expectThrottled(t, s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}))
	s.login("person2@world.com", userPass)

	lines := audit()
	var failed []map[string]any
	for _, l := range lines {
		if l["event"] == "password_check_failed" {
			failed = append(failed, l)
		}
	}
	if len(failed) != 4 {
		t.Fatalf("%d password_check_failed lines, want 4: %v", len(failed), lines)
	}
	id1, id2 := strconv.FormatInt(u1.ID, 10), strconv.FormatInt(u2.ID, 10)
	want := []struct{ endpoint, user string }{{"password_change", id1}, {"password_change", id1}, {"mfa_deactivate", id1}, {"password_change", id2}}
	for i, l := range failed {
		if l["endpoint"] != want[i].endpoint || l["user_id"] != want[i].user || l["client_ip"] != "127.0.0.1" || l["email_hash"] == nil {
			t.Fatalf("audit line %d: %v", i, l)
		}
	}
	if failed[0]["email_hash"] != failed[1]["email_hash"] || failed[0]["email_hash"] == failed[3]["email_hash"] {
		t.Fatalf("email_hash does not follow the address: %v", failed)
	}
	for _, l := range lines {
		for k, v := range l {
			if s, ok := v.(string); ok && (strings.Contains(s, "world.com") || strings.Contains(s, "wrong-")) {
				t.Fatalf("audit field %s shows %q", k, s)
			}
		}
	}
}

// The per-client throttle (password_check_ip) counts the password checks
// of every user from one client; another client has its own count.
func TestPasswordChecksThrottledPerClientE2E(t *testing.T) {
	cf := withTrustedLoopback(caddyfile(backends()[0].store(t),
		"mfa_totp_mode optional\n\t\tthrottle password_check_ip 3 1m\n\t\tthrottle login_ip 100 1m", defaultBody))
	s := startCaddy(t, cf)
	mustCreateUser(t, userEmail, userPass, 0)
	mustCreateUser(t, "person2@world.com", userPass, 0)
	a, _ := s.login(userEmail, userPass)
	b, _ := s.login("person2@world.com", userPass)
	const client = "X-Forwarded-For: 203.0.113.5"
	s.post("/auth/password/change/", passwordChangeBody("wrong-one"), bearer(a), client).expect(t, 400)
	s.post("/auth/mfa/deactivate/", map[string]string{"password": "wrong-two"}, bearer(b), client).expect(t, 400)
	s.post("/auth/password/change/", passwordChangeBody("wrong-three"), bearer(b), client).expect(t, 400)
	expectThrottled(t, s.post("/auth/password/change/", passwordChangeBody(userPass), bearer(a), client))
	expectThrottled(t, s.post("/auth/mfa/deactivate/", map[string]string{"password": userPass}, bearer(b), client))
	// The same tokens from another client are checked.
	r := s.post("/auth/password/change/", passwordChangeBody(userPass), bearer(a), "X-Forwarded-For: 203.0.113.6").expect(t, 200)
	if r.str("access") == "" {
		t.Fatalf("change: %s", r.raw)
	}
}

// Client throttles key an IPv6 client by its /64 (throttle_ipv6_prefix,
// here also 48): addresses in one network share a count, the next
// network has its own.
func TestIPv6ClientsShareTheirNetworkE2E(t *testing.T) {
	for _, tc := range []struct {
		name, option, same, next string
	}{
		{"default_64", "", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::1"},
		{"prefix_48", "\n\t\tthrottle_ipv6_prefix 48", "2001:db8:1:ff::1", "2001:db8:2::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := withTrustedLoopback(caddyfile(backends()[0].store(t), "throttle login_ip 3 1m"+tc.option, defaultBody))
			s := startCaddy(t, cf)
			try := func(i int, ip string) reply {
				return s.post("/auth/login/", map[string]string{"email": fmt.Sprintf("spray%d@world.com", i), "password": "Summer2024!"},
					"X-Forwarded-For: "+ip)
			}
			try(0, "2001:db8:1:2::a").expect(t, 401)
			try(1, "2001:db8:1:2::b").expect(t, 401)
			try(2, "2001:db8:1:2::a").expect(t, 401)
			expectThrottled(t, try(3, tc.same))
			try(4, tc.next).expect(t, 401)
			// IPv4 clients are counted by address.
			try(5, "198.51.100.1").expect(t, 401)
			try(6, "198.51.100.2").expect(t, 401)
		})
	}
}

// With Redis, a matched password is taken back from the shared count as
// in memory: successes never lock, failures do.
func TestRedisLoginCountsFailuresE2E(t *testing.T) {
	redistest.URL(t)
	opts := fmt.Sprintf("rate_limit redis {env.%s} {\n\t\t\tkey_prefix e2e_%s:\n\t\t}\n\t\tthrottle login_email 3 5m\n\t\tthrottle login_ip 100 1m", redistest.URLEnv, randomHex(t, 6))
	s := startCaddy(t, caddyfile(backends()[0].store(t), opts, defaultBody))
	mustCreateUser(t, userEmail, userPass, 0)
	for range 6 {
		s.login(userEmail, userPass)
	}
	for range 3 {
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": "wrong-password"}).expect(t, 401)
	}
	expectThrottled(t, s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}))
	if n := metric(t, "caddy_jwt_allauth_limiter_fallbacks_total"); n != 0 {
		t.Fatalf("%v fallbacks with Redis up", n)
	}
}
