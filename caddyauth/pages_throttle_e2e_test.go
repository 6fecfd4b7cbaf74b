package caddyauth_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The pages call the same realm methods as the JSON endpoints, so a login
// or a code on a page is throttled, counted, locked out and audited
// exactly like one on the API, and both draw on the same budgets.

// withAuditLog adds a log to cf that writes the audit lines
// (jwt_allauth.audit) as JSON to a file, and returns cf and a reader of
// the lines written so far.
func withAuditLog(t *testing.T, cf string) (string, func() []map[string]any) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	const anchor = "\tlog {\n\t\tlevel ERROR\n\t}\n"
	if !strings.Contains(cf, anchor) {
		t.Fatalf("no global log block in:\n%s", cf)
	}
	cf = strings.Replace(cf, anchor, anchor+"\tlog audit {\n\t\toutput file "+path+"\n\t\tformat json\n\t\tlevel INFO\n\t\tinclude jwt_allauth.audit\n\t}\n", 1)
	return cf, func() []map[string]any {
		t.Helper()
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var lines []map[string]any
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			lines = append(lines, m)
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		return lines
	}
}

// auditEvents counts audit lines by event, and by event and reason or
// method ("login_failed/credentials", "mfa_failed/totp").
func auditEvents(lines []map[string]any) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		ev, _ := l["event"].(string)
		n[ev]++
		for _, k := range []string{"reason", "method"} {
			if v, ok := l[k].(string); ok {
				n[ev+"/"+v]++
			}
		}
	}
	return n
}

var throttledText = regexp.MustCompile(`Too many attempts\. Please wait ([0-9]+) seconds? and try again\.`)

// expectPageThrottled checks a page's 429: the form again with a message
// for a person, and its wait in Retry-After within [lo, hi].
func expectPageThrottled(t *testing.T, p page, form string, lo, hi int) {
	t.Helper()
	p.expect(t, http.StatusTooManyRequests)
	m := throttledText.FindStringSubmatch(p.body)
	if m == nil || !strings.Contains(p.body, `action="`+form+`"`) {
		t.Fatalf("throttled page lacks the form or the message:\n%s", p.body)
	}
	wait, _ := strconv.Atoi(m[1])
	if ra := p.header.Get("Retry-After"); ra != m[1] || wait < lo || wait > hi {
		t.Fatalf("Retry-After %q, page says %s, want %d..%d", ra, m[1], lo, hi)
	}
}

// TestLoginPageThrottledLikeAPIE2E: the login page counts towards
// login_email and login_ip with POST /login/, before the password is
// looked at, with the same metrics and audit lines.
func TestLoginPageThrottledLikeAPIE2E(t *testing.T) {
	cf, audit := withAuditLog(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "throttle login_email 3 5m\n\t\tthrottle login_ip 6 1m", browserBody))
	s := startCaddy(t, cf)
	mustCreateUser(t, userEmail, userPass, 0)
	b := newFormBrowser(t)

	// Three wrong passwords for one address, two on the page and one on
	// the API, in any spelling of the address.
	b.loginForm("/dash", userEmail, "wrong-password").expect(t, http.StatusUnauthorized)
	s.post("/auth/login/", map[string]string{"email": userEmail, "password": "wrong-password"}).expect(t, http.StatusUnauthorized)
	b.loginForm("/dash", " PERSON1@World.com", "wrong-password").expect(t, http.StatusUnauthorized)

	// The fourth, with the right password, is refused on both, and the
	// page sets no cookie of the session.
	p := b.loginForm("/dash", userEmail, userPass)
	expectPageThrottled(t, p, "/auth/page/login", 290, 300)
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "access_token" || c.Name == "refresh_token" {
			t.Fatalf("a throttled login page set %s", c.Name)
		}
	}
	if b.cookie("/", "access_token") != "" || b.cookie("/auth/", "refresh_token") != "" {
		t.Fatal("a throttled login left session cookies")
	}
	expectThrottled(t, s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}))

	// Per client: two more addresses from the page take the address's
	// sixth request, the seventh is refused whatever the e-mail.
	b.loginForm("/dash", "someone@world.com", "wrong-password").expect(t, http.StatusUnauthorized)
	expectPageThrottled(t, b.loginForm("/dash", "someone-else@world.com", "wrong-password"), "/auth/page/login", 1, 60)

	for name, want := range map[string]float64{
		`caddy_jwt_allauth_throttled_total{throttle="login_email"}`: 2,
		`caddy_jwt_allauth_throttled_total{throttle="login_ip"}`:    1,
		`caddy_jwt_allauth_logins_total{result="throttled"}`:        3,
		`caddy_jwt_allauth_logins_total{result="failure"}`:          4,
		`caddy_jwt_allauth_logins_total{result="success"}`:          0,
	} {
		if got := metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	lines := audit()
	n := auditEvents(lines)
	// Throttled refusals are counted (above) but audited at debug only, so
	// a flood of guesses does not flood the log.
	if n["login_failed/credentials"] != 4 || n["login_failed/throttled"] != 0 || n["login_succeeded"] != 0 {
		t.Fatalf("audit events %v", n)
	}
	// The page's and the API's lines about one address are alike: the
	// same hash of the normalised address (its three wrong passwords; its
	// throttled requests are audited at debug), and no address in clear.
	hashes := map[any]int{}
	for _, l := range lines {
		if l["event"] == "login_failed" {
			hashes[l["email_hash"]]++
		}
	}
	if len(hashes) != 2 || hashes[nil] != 0 || hashes[lines[0]["email_hash"]] != 3 {
		t.Fatalf("audit lines by address %v: %v", hashes, lines)
	}
	for _, l := range lines {
		raw, _ := json.Marshal(l)
		if strings.Contains(strings.ToLower(string(raw)), "person1") {
			t.Fatalf("an address in an audit line: %s", raw)
		}
	}

	// Past the windows, the page signs in, counted and audited as a
	// success.
	advance(t, 5*time.Minute+time.Second)
	b.loginForm("/dash", userEmail, userPass).expect(t, http.StatusSeeOther)
	if got := metric(t, `caddy_jwt_allauth_logins_total{result="success"}`); got != 1 {
		t.Fatalf("logins{success} %v", got)
	}
	if n := auditEvents(audit()); n["login_succeeded"] != 1 {
		t.Fatalf("audit events after the login %v", n)
	}
}

// TestMFAPageCountedLikeAPIE2E: codes on the MFA page are failures of
// the user like codes on /mfa/verify/ (one budget, one lockout, the bare
// lockout message), count towards mfa_verify_ip, and are measured and
// audited the same way.
func TestMFAPageCountedLikeAPIE2E(t *testing.T) {
	opts := mfaOptions("optional", "mfa_challenge_max_attempts 0", "mfa_max_attempts 3", "mfa_lockout 600s",
		"throttle mfa_verify_ip 4 1m", "throttle login_ip off", "throttle login_email off")
	cf, audit := withAuditLog(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", opts, browserBody))
	s := startCaddy(t, cf)
	const email = "pagecode@world.com"
	u, en := s.enrolledUser(email)
	nextStep(t)
	bad := wrongCode(t, en.secret)

	b := newFormBrowser(t)
	p := b.loginForm("/dash", email, mfaPass).expect(t, http.StatusSeeOther)
	if p.location() != "/auth/page/mfa?next=%2Fdash" {
		t.Fatalf("after the password: %q", p.location())
	}
	mp := b.get(p.location()).expect(t, 200)
	code := func(c string) page {
		t.Helper()
		return b.post("/auth/page/mfa", url.Values{"csrf_token": {mp.csrf(t)}, "code": {c}, "next": {"/dash"}})
	}

	// One failure on the page, one on the API: two of the user's three.
	if p := code(bad).expect(t, http.StatusBadRequest); !strings.Contains(p.body, "Invalid code.") {
		t.Fatalf("wrong code:\n%s", p.body)
	}
	if n := attempts(t, u.ID); n != 1 {
		t.Fatalf("%d failure records after a wrong code on the page, want 1", n)
	}
	s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
	// The third, on the page, locks the user out with the verify
	// endpoints' bare message; the page's challenge is gone.
	p = code(bad).expect(t, http.StatusTooManyRequests)
	if !strings.Contains(p.body, "Too many failed MFA attempts. Try again later.") || throttledText.MatchString(p.body) {
		t.Fatalf("lockout page:\n%s", p.body)
	}
	if ra, _ := strconv.Atoi(p.header.Get("Retry-After")); ra < 580 || ra > 600 {
		t.Fatalf("lockout Retry-After %q", p.header.Get("Retry-After"))
	}
	if b.cookie("/auth/page/", "jwt_allauth_mfa") != "" {
		t.Fatal("the page kept a challenge the lockout killed")
	}
	if n := attempts(t, u.ID); n != 3 {
		t.Fatalf("%d failure records, want 3", n)
	}
	// The API sees the lockout the page caused, and so does the login
	// page, in login's throttle wording.
	s.loginLockedOut(email, 570, 600)
	lp := b.loginForm("/dash", email, mfaPass).expect(t, http.StatusTooManyRequests)
	if !retryAfterTextHTML.MatchString(lp.body) || lp.header.Get("Retry-After") == "" {
		t.Fatalf("login page while locked out:\n%s", lp.body)
	}
	fresh := mintChallenge(t, u.ID)
	s.verify(fresh, totpNow(t, en.secret)).lockedOut(t, 570, 600)

	// That was the address's fourth code; the fifth, on the page, is
	// throttled and keeps the form and its challenge.
	u2, _ := url.Parse(testBase + "/auth/page/")
	b.jar.SetCookies(u2, []*http.Cookie{{Name: "jwt_allauth_mfa", Value: fresh, Path: "/auth/page/"}})
	expectPageThrottled(t, code(totpNow(t, en.secret)), "/auth/page/mfa", 1, 60)
	if b.cookie("/auth/page/", "jwt_allauth_mfa") != fresh {
		t.Fatal("a throttled code dropped the challenge")
	}

	for name, want := range map[string]float64{
		`caddy_jwt_allauth_mfa_verifications_total{method="totp",result="failure"}`: 3,
		`caddy_jwt_allauth_mfa_verifications_total{method="totp",result="success"}`: 0,
		`caddy_jwt_allauth_lockouts_total{kind="mfa"}`:                              1,
		`caddy_jwt_allauth_throttled_total{throttle="mfa_verify_ip"}`:               1,
		`caddy_jwt_allauth_logins_total{result="locked"}`:                           2,
	} {
		if got := metric(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// Past the lockout, the page's code opens the session, clears the
	// failures, and is counted and audited as a success.
	advance(t, 601*time.Second)
	nextStep(t)
	b.loginForm("/dash", email, mfaPass).expect(t, http.StatusSeeOther)
	mp = b.get("/auth/page/mfa?next=%2Fdash").expect(t, 200)
	if loc := code(totpNow(t, en.secret)).expect(t, http.StatusSeeOther).location(); loc != "/dash" {
		t.Fatalf("after the code: %q", loc)
	}
	b.get("/dash").expect(t, 200)
	if n := attempts(t, u.ID); n != 0 {
		t.Fatalf("%d failure records after a success", n)
	}
	if got := metric(t, `caddy_jwt_allauth_mfa_verifications_total{method="totp",result="success"}`); got != 1 {
		t.Fatalf("mfa{totp,success} %v", got)
	}
	n := auditEvents(audit())
	if n["mfa_failed/totp"] != 3 || n["mfa_lockout"] != 1 || n["mfa_succeeded/totp"] != 1 || n["login_failed/mfa_locked"] != 2 {
		t.Fatalf("audit events %v", n)
	}
}

// retryAfterTextHTML is retryAfterText inside a page.
var retryAfterTextHTML = regexp.MustCompile(`Too many failed MFA attempts\. Try again later\. Expected available in \d+ seconds?\.`)

// TestFormPagesThrottledLikeAPIE2E: the sign-up and forgot-password pages
// draw on registration_ip and password_reset_ip with their endpoints.
func TestFormPagesThrottledLikeAPIE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "throttle registration_ip 2 1m\n\t\tthrottle password_reset_ip 2 1m", browserBody))
	b := newFormBrowser(t)

	s.post("/auth/registration/", map[string]string{"email": uniqueEmail(t, "t1"), "password1": userPass, "password2": userPass, "first_name": "A", "last_name": "B"}).expect(t, http.StatusCreated)
	csrf := b.get("/auth/page/signup").expect(t, 200).csrf(t)
	b.post("/auth/page/signup", signupForm(csrf, "/", uniqueEmail(t, "t2"), userPass)).expect(t, http.StatusSeeOther)
	expectPageThrottled(t, b.post("/auth/page/signup", signupForm(csrf, "/", uniqueEmail(t, "t3"), userPass)), "/auth/page/signup", 1, 60)

	s.post("/auth/password/reset/", map[string]string{"email": uniqueEmail(t, "r1")}).expect(t, 200)
	csrf = b.get("/auth/page/password-reset").expect(t, 200).csrf(t)
	b.post("/auth/page/password-reset", url.Values{"csrf_token": {csrf}, "email": {uniqueEmail(t, "r2")}}).expect(t, 200)
	expectPageThrottled(t, b.post("/auth/page/password-reset", url.Values{"csrf_token": {csrf}, "email": {uniqueEmail(t, "r3")}}), "/auth/page/password-reset", 1, 60)
}
