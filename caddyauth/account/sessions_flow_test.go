package account_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// The flows of sessions.go and login.go, run on a core of their own per
// test (coretest), with the realm's clock moved instead of sleeping.

var origin = account.Origin{IP: "192.0.2.1", Host: "auth.example.com", Site: "https://auth.example.com/auth"}

const password = "correct horse battery staple"

var ctx = context.Background()

// newUser creates an active account with a confirmed address and the
// password above.
func newUser(t *testing.T, rl *coretest.Realm, email string) account.User {
	t.Helper()
	u, err := rl.Users.Create(ctx, email, password, account.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// login (signup_flow_test.go) logs in and wants no refusal.

// signIn logs in with the right password and wants a session.
func signIn(t *testing.T, rl *coretest.Realm, email string) account.TokenPair {
	t.Helper()
	step := login(t, rl, email, password)
	if step.Pending() || step.Pair.Access == "" || step.Pair.Refresh == "" {
		t.Fatalf("login %s: step %+v, want a session", email, step)
	}
	return step.Pair
}

// wantRefusal wants err to be a refusal of kind with detail and code.
func wantRefusal(t *testing.T, err error, kind account.Kind, detail, code string) *account.Refusal {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want the refusal %q", err, detail)
	}
	if r.Kind != kind || r.Detail != detail || r.Code != code {
		t.Fatalf("refusal {kind %d, %q, code %q}, want {kind %d, %q, code %q}", r.Kind, r.Detail, r.Code, kind, detail, code)
	}
	return r
}

// claimsOf parses a token of typ on the realm's keys at the realm's time.
func claimsOf(t *testing.T, rl *coretest.Realm, raw, typ string) tokens.Claims {
	t.Helper()
	c, err := rl.Keys().Parse(raw, typ, rl.Clock.Now())
	if err != nil {
		t.Fatalf("parsing a %s token: %v", typ, err)
	}
	return c
}

// live reports whether the store still holds a row of session.
func live(t *testing.T, rl *coretest.Realm, session string) bool {
	t.Helper()
	ok, err := rl.Store.SessionActive(ctx, session)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// stored is the user's row as the store holds it now.
func stored(t *testing.T, rl *coretest.Realm, id int64) account.User {
	t.Helper()
	u, err := rl.Store.UserByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// reasons are the reason attributes of the audit lines of event, in order.
func reasons(rl *coretest.Realm, event string) []string {
	var out []string
	for _, r := range rl.Audit.Events(event) {
		out = append(out, r.Attrs["reason"])
	}
	return out
}

func wantStrings(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

const msgTokenInvalid = "Token is invalid or expired"

func TestLoginMFADisabledOpensSession(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "ada@example.com")
	before := rl.Clock.Now().Truncate(time.Second)

	// The address is normalised before the lookup.
	step := login(t, rl, "  ADA@Example.com ", password)
	if step.Pending() {
		t.Fatalf("step %+v, want a session", step)
	}
	ac := claimsOf(t, rl, step.Pair.Access, tokens.TypeAccess)
	rc := claimsOf(t, rl, step.Pair.Refresh, tokens.TypeRefresh)
	if want := strconv.FormatInt(u.ID, 10); ac.UserID != want || rc.UserID != want {
		t.Fatalf("user ids %q / %q, want %q", ac.UserID, rc.UserID, want)
	}
	if len(ac.Session) != 32 || rc.Session != ac.Session {
		t.Fatalf("sessions %q / %q, want one 32-hex id", ac.Session, rc.Session)
	}
	if ac.SessionIAT != rc.SessionIAT || ac.SessionIAT < before.Unix() || ac.SessionIAT > rl.Clock.Now().Unix() {
		t.Fatalf("session_iat %d / %d, want the login time", ac.SessionIAT, rc.SessionIAT)
	}
	if ac.Role != account.RoleUser || !ac.EmailVerified || ac.ID == rc.ID {
		t.Fatalf("access claims %+v", ac)
	}
	if d := ac.ExpiresAt.Sub(ac.IssuedAt.Time); d != 30*time.Minute {
		t.Fatalf("access lifetime %v, want 30m", d)
	}
	if d := rc.ExpiresAt.Sub(rc.IssuedAt.Time); d != 14*24*time.Hour {
		t.Fatalf("refresh lifetime %v, want 14 days", d)
	}
	if _, err := rl.Keys().Parse(step.Pair.Access, tokens.TypeRefresh, rl.Clock.Now()); !errors.Is(err, tokens.ErrWrongType) {
		t.Fatalf("the access token as a refresh token: %v, want ErrWrongType", err)
	}
	if !live(t, rl, ac.Session) {
		t.Fatal("no whitelist row for the new session")
	}
	if c, err := rl.Sessions.LiveAccess(ctx, step.Pair.Access); err != nil || c.Session != ac.Session {
		t.Fatalf("LiveAccess: %+v, %v", c, err)
	}
	if ll := stored(t, rl, u.ID).LastLogin; ll.Before(before) || ll.After(rl.Clock.Now()) {
		t.Fatalf("last_login %v, want the login time (from %v)", ll, before)
	}
	ev := rl.Audit.Events("login_succeeded")
	if len(ev) != 1 || ev[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) || ev[0].Attrs["client_ip"] != origin.IP || ev[0].Attrs["mfa_pending"] != "" {
		t.Fatalf("login_succeeded lines %+v", ev)
	}
}

func TestLoginRefusals(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "ada@example.com")

	_, err := rl.Sessions.Login(ctx, origin, "ada@example.com", "wrong password")
	wantRefusal(t, err, account.Unauthenticated, "Incorrect credentials", "incorrect_credentials")
	_, err = rl.Sessions.Login(ctx, origin, "nobody@example.com", password)
	wantRefusal(t, err, account.Unauthenticated, "Incorrect credentials", "incorrect_credentials")

	if _, err := rl.Users.Disable(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	// The password is checked first: only its owner learns the account
	// is disabled.
	_, err = rl.Sessions.Login(ctx, origin, "ada@example.com", password)
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoActiveAccount, "")
	_, err = rl.Sessions.Login(ctx, origin, "ada@example.com", "wrong password")
	wantRefusal(t, err, account.Unauthenticated, "Incorrect credentials", "incorrect_credentials")

	if ll := stored(t, rl, u.ID).LastLogin; !ll.IsZero() {
		t.Fatalf("last_login %v after refused logins", ll)
	}
	wantStrings(t, "login_failed reasons", reasons(rl, "login_failed"), "credentials", "credentials", "inactive", "credentials")
	ev := rl.Audit.Events("login_failed")
	if ev[1].Attrs["user_id"] != "" || ev[1].Attrs["email_hash"] != rl.EmailHash("nobody@example.com") {
		t.Fatalf("line of the unknown address: %+v", ev[1].Attrs)
	}
	if ev[2].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("line of the disabled account: %+v", ev[2].Attrs)
	}
	if n := len(rl.Audit.Events("login_succeeded")); n != 0 {
		t.Fatalf("%d login_succeeded lines", n)
	}
}

func TestLoginUnverifiedUnderMandatoryVerification(t *testing.T) {
	rl := coretest.New(t, account.Config{EmailVerification: account.VerifyMandatory})
	u := newUser(t, rl, "ada@example.com")
	if err := rl.Store.SetEmailVerified(ctx, u.ID, false); err != nil {
		t.Fatal(err)
	}
	_, err := rl.Sessions.Login(ctx, origin, "ada@example.com", password)
	wantRefusal(t, err, account.Unauthenticated, "User email is not verified", "email_not_verified")
	wantStrings(t, "login_failed reasons", reasons(rl, "login_failed"), "email_not_verified")
	if ll := stored(t, rl, u.ID).LastLogin; !ll.IsZero() {
		t.Fatalf("last_login %v", ll)
	}

	if err := rl.Store.SetEmailVerified(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	signIn(t, rl, "ada@example.com")
}

func TestLoginEmailThrottle(t *testing.T) {
	rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{
		"login_email": {Limit: 3, Window: time.Minute},
	}})
	newUser(t, rl, "ada@example.com")

	// Only failures count: as many right passwords as the limit go through.
	for range 3 {
		signIn(t, rl, "ada@example.com")
	}
	for range 3 {
		_, err := rl.Sessions.Login(ctx, origin, "ada@example.com", "wrong password")
		wantRefusal(t, err, account.Unauthenticated, "Incorrect credentials", "incorrect_credentials")
	}
	throttled := func(email string) *account.Refusal {
		t.Helper()
		_, err := rl.Sessions.Login(ctx, origin, email, password)
		var r *account.Refusal
		if !errors.As(err, &r) || r.Kind != account.Throttled || !errors.Is(err, account.ErrRequestThrottled) {
			t.Fatalf("login of %s: %v, want a throttle refusal", email, err)
		}
		if r.RetryAfter < 1 || r.RetryAfter > 60 {
			t.Fatalf("RetryAfter %d, want 1..60", r.RetryAfter)
		}
		if want := fmt.Sprintf("Request was throttled. Expected available in %d seconds.", r.RetryAfter); r.Detail != want {
			t.Fatalf("detail %q, want %q", r.Detail, want)
		}
		return r
	}
	// The right password no longer helps, nor another spelling of the address.
	r := throttled("ada@example.com")
	throttled(" ADA@example.com")
	// Another address has a budget of its own.
	_, err := rl.Sessions.Login(ctx, origin, "nobody@example.com", password)
	wantRefusal(t, err, account.Unauthenticated, "Incorrect credentials", "incorrect_credentials")

	rl.Clock.Advance(time.Duration(r.RetryAfter-2) * time.Second)
	throttled("ada@example.com")
	rl.Clock.Advance(2 * time.Second) // the first failure leaves the window
	signIn(t, rl, "ada@example.com")

	wantStrings(t, "login_failed reasons", reasons(rl, "login_failed"),
		"credentials", "credentials", "credentials", "throttled", "throttled", "credentials", "throttled")
	for _, ev := range rl.Audit.Events("throttled") {
		if ev.Attrs["throttle"] != "login_email" {
			t.Fatalf("throttled line %+v", ev.Attrs)
		}
	}
	if n := len(rl.Audit.Events("throttled")); n != 3 {
		t.Fatalf("%d throttled lines, want 3", n)
	}
}

func TestRefreshRotatesAndReuseRevokesSession(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p0 := signIn(t, rl, "ada@example.com")
	other := signIn(t, rl, "ada@example.com") // a second session of the same user
	r0 := claimsOf(t, rl, p0.Refresh, tokens.TypeRefresh)

	rl.Clock.Advance(time.Minute)
	p1, err := rl.Sessions.Refresh(ctx, origin, p0.Refresh, 0)
	if err != nil {
		t.Fatal(err)
	}
	r1 := claimsOf(t, rl, p1.Refresh, tokens.TypeRefresh)
	a1 := claimsOf(t, rl, p1.Access, tokens.TypeAccess)
	if r1.ID == r0.ID || r1.Session != r0.Session || a1.Session != r0.Session {
		t.Fatalf("rotation: jti %q -> %q, session %q -> %q / %q", r0.ID, r1.ID, r0.Session, r1.Session, a1.Session)
	}
	if r1.SessionIAT != r0.SessionIAT || a1.SessionIAT != r0.SessionIAT {
		t.Fatalf("session_iat %d -> %d / %d, want it kept", r0.SessionIAT, r1.SessionIAT, a1.SessionIAT)
	}
	if !r1.IssuedAt.After(r0.IssuedAt.Time) || !r1.ExpiresAt.After(r0.ExpiresAt.Time) {
		t.Fatalf("rotation: iat %v -> %v, exp %v -> %v", r0.IssuedAt, r1.IssuedAt, r0.ExpiresAt, r1.ExpiresAt)
	}

	// The spent token again: a reuse. The whole session goes, its newest
	// tokens with it; the user's other session stays.
	_, err = rl.Sessions.Refresh(ctx, origin, p0.Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	if live(t, rl, r0.Session) {
		t.Fatal("the session survived the reuse of its refresh token")
	}
	_, err = rl.Sessions.Refresh(ctx, origin, p1.Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	_, err = rl.Sessions.LiveAccess(ctx, p1.Access)
	wantRefusal(t, err, account.Unauthenticated, "Session is no longer active.", "token_not_valid")
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("%v, want ErrSessionEnded", err)
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, other.Refresh, 0); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "refresh_not_whitelisted", "refresh_not_whitelisted")

	// Garbage and the wrong token type are refused in the token's words.
	_, err = rl.Sessions.Refresh(ctx, origin, "not a token", 0)
	wantRefusal(t, err, account.Unauthenticated, "Token is invalid", "token_not_valid")
	_, err = rl.Sessions.Refresh(ctx, origin, other.Access, 0)
	wantRefusal(t, err, account.Unauthenticated, "Token has wrong type", "token_not_valid")
}

func TestRefreshGrace(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p0 := signIn(t, rl, "ada@example.com")
	grace := account.RefreshHopGrace
	jti := func(p account.TokenPair) string { return claimsOf(t, rl, p.Refresh, tokens.TypeRefresh).ID }
	refresh := func(raw string) account.TokenPair {
		t.Helper()
		p, err := rl.Sessions.Refresh(ctx, origin, raw, grace)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	p1 := refresh(p0.Refresh)
	// Within the grace the spent token gets its successor, not a new one.
	p2 := refresh(p0.Refresh)
	if jti(p2) != jti(p1) {
		t.Fatalf("hop within the grace: jti %s, want the successor %s", jti(p2), jti(p1))
	}
	session := claimsOf(t, rl, p2.Access, tokens.TypeAccess).Session
	if !live(t, rl, session) {
		t.Fatal("the hop within the grace revoked the session")
	}
	// The successor rotates as usual; the first token now leads to the end
	// of the chain.
	p3 := refresh(p1.Refresh)
	if jti(p3) == jti(p1) {
		t.Fatal("rotating the successor gave it back")
	}
	if p4 := refresh(p0.Refresh); jti(p4) != jti(p3) {
		t.Fatalf("hop: jti %s, want the end of the chain %s", jti(p4), jti(p3))
	}
	if n := len(rl.Audit.Events("session_revoked")); n != 0 {
		t.Fatalf("%d session_revoked lines within the grace", n)
	}

	rl.Clock.Advance(grace + time.Second)
	_, err := rl.Sessions.Refresh(ctx, origin, p0.Refresh, grace)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	if live(t, rl, session) {
		t.Fatal("a reuse past the grace left the session live")
	}
	_, err = rl.Sessions.Refresh(ctx, origin, p3.Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "refresh_not_whitelisted", "refresh_not_whitelisted")
}

func TestSessionLifetime(t *testing.T) {
	rl := coretest.New(t, account.Config{SessionLifetime: time.Hour})
	u := newUser(t, rl, "ada@example.com")
	p0 := signIn(t, rl, "ada@example.com")
	r0 := claimsOf(t, rl, p0.Refresh, tokens.TypeRefresh)
	a0 := claimsOf(t, rl, p0.Access, tokens.TypeAccess)
	end := time.Unix(r0.SessionIAT, 0).Add(time.Hour)
	if !r0.ExpiresAt.Equal(end) {
		t.Fatalf("refresh exp %v, want session_iat+1h %v", r0.ExpiresAt, end)
	}
	if d := a0.ExpiresAt.Sub(a0.IssuedAt.Time); d != 30*time.Minute {
		t.Fatalf("access lifetime %v, want 30m (below the cap)", d)
	}

	rl.Clock.Advance(45 * time.Minute)
	p1, err := rl.Sessions.Refresh(ctx, origin, p0.Refresh, 0)
	if err != nil {
		t.Fatal(err)
	}
	r1 := claimsOf(t, rl, p1.Refresh, tokens.TypeRefresh)
	a1 := claimsOf(t, rl, p1.Access, tokens.TypeAccess)
	if r1.SessionIAT != r0.SessionIAT || !r1.ExpiresAt.Equal(end) || !a1.ExpiresAt.Equal(end) {
		t.Fatalf("after 45m: session_iat %d, exp %v / %v, want %d and both at %v", r1.SessionIAT, r1.ExpiresAt, a1.ExpiresAt, r0.SessionIAT, end)
	}

	// Past the cap both tokens have expired: the refresh token is refused
	// by its exp before the lifetime check is reached.
	rl.Clock.Advance(15*time.Minute + time.Second)
	_, err = rl.Sessions.Refresh(ctx, origin, p1.Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, "Token is expired", "token_not_valid")
	_, err = rl.Sessions.Check(ctx, p1.Access, false)
	if r := wantRefusal(t, err, account.Unauthenticated, "Given token not valid for any token type", "token_not_valid"); r.TokenProblem != "Token is expired" {
		t.Fatalf("token problem %q", r.TokenProblem)
	}

	// A session older than the lifetime whose refresh token is not capped
	// (issued before the lifetime was set): refused as expired, its rows
	// deleted.
	now := rl.Clock.Now()
	c := tokens.Claims{
		TokenType:  tokens.TypeRefresh,
		UserID:     strconv.FormatInt(u.ID, 10),
		Session:    "0123456789abcdef0123456789abcdef",
		SessionIAT: now.Add(-2 * time.Hour).Unix(),
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        "fedcba9876543210fedcba9876543210",
			IssuedAt:  jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(24 * time.Hour)),
		},
	}
	raw, err := rl.Keys().Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.Store.InsertRefresh(ctx, account.RefreshToken{JTI: c.ID, Session: c.Session, UserID: u.ID, Enabled: true, Created: now, Expires: now.Add(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Sessions.Refresh(ctx, origin, raw, 0)
	wantRefusal(t, err, account.Unauthenticated, "Session reached its maximum lifetime. Please log in again", "session_expired")
	if live(t, rl, c.Session) {
		t.Fatal("the expired session kept its rows")
	}
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "session_lifetime")
}

func TestLogout(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	newUser(t, rl, "bob@example.com")
	a1 := signIn(t, rl, "ada@example.com")
	a2 := signIn(t, rl, "ada@example.com")
	b := signIn(t, rl, "bob@example.com")
	caller, err := rl.Sessions.Check(ctx, a1.Access, false)
	if err != nil {
		t.Fatal(err)
	}
	sessionOf := func(p account.TokenPair) string { return claimsOf(t, rl, p.Access, tokens.TypeAccess).Session }

	for _, in := range []struct{ name, raw string }{
		{"another user's refresh token", b.Refresh},
		{"garbage", "not a token"},
		{"the caller's access token", a1.Access},
	} {
		err := rl.Sessions.Logout(ctx, origin, caller, in.raw)
		var r *account.Refusal
		if !errors.As(err, &r) || r.Kind != account.Invalid || r.Detail != "Invalid token." || r.Code != "" {
			t.Fatalf("logout with %s: %v, want Invalid %q", in.name, err, "Invalid token.")
		}
	}
	if !live(t, rl, sessionOf(b)) || !live(t, rl, sessionOf(a1)) {
		t.Fatal("a refused logout ended a session")
	}

	if err := rl.Sessions.Logout(ctx, origin, caller, a1.Refresh); err != nil {
		t.Fatal(err)
	}
	if live(t, rl, sessionOf(a1)) {
		t.Fatal("the session is still live after its logout")
	}
	if !live(t, rl, sessionOf(a2)) || !live(t, rl, sessionOf(b)) {
		t.Fatal("logout ended other sessions")
	}
	err = rl.Sessions.Logout(ctx, origin, caller, a1.Refresh)
	wantRefusal(t, err, account.Invalid, "Invalid token.", "")
	_, err = rl.Sessions.Refresh(ctx, origin, a1.Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "logout", "refresh_not_whitelisted")
}

func TestLogoutAll(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	newUser(t, rl, "bob@example.com")
	a1 := signIn(t, rl, "ada@example.com")
	a2 := signIn(t, rl, "ada@example.com")
	b := signIn(t, rl, "bob@example.com")

	if err := rl.Sessions.LogoutAll(ctx, origin, a1.Access); err != nil {
		t.Fatal(err)
	}
	for _, p := range []account.TokenPair{a1, a2} {
		_, err := rl.Sessions.LiveAccess(ctx, p.Access)
		wantRefusal(t, err, account.Unauthenticated, "Session is no longer active.", "token_not_valid")
		if !errors.Is(err, account.ErrSessionEnded) {
			t.Fatalf("%v, want ErrSessionEnded", err)
		}
		_, err = rl.Sessions.Refresh(ctx, origin, p.Refresh, 0)
		wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	}
	if _, err := rl.Sessions.LiveAccess(ctx, b.Access); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	// Its access token no longer belongs to a live session.
	err := rl.Sessions.LogoutAll(ctx, origin, a2.Access)
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("LogoutAll from an ended session: %v, want ErrSessionEnded", err)
	}
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "logout_all", "refresh_not_whitelisted", "refresh_not_whitelisted")
}

func TestEndSession(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	byRefresh := signIn(t, rl, "ada@example.com")
	byAccess := signIn(t, rl, "ada@example.com")
	kept := signIn(t, rl, "ada@example.com")
	sessionOf := func(p account.TokenPair) string { return claimsOf(t, rl, p.Access, tokens.TypeAccess).Session }

	// Neither token, or neither verifying, ends nothing and is no error.
	for _, in := range [][2]string{{"", ""}, {"garbage", "garbage"}} {
		if err := rl.Sessions.EndSession(ctx, origin, in[0], in[1]); err != nil {
			t.Fatalf("EndSession(%q, %q): %v", in[0], in[1], err)
		}
	}
	// The refresh token wins over the access token.
	if err := rl.Sessions.EndSession(ctx, origin, byRefresh.Refresh, kept.Access); err != nil {
		t.Fatal(err)
	}
	if err := rl.Sessions.EndSession(ctx, origin, "", byAccess.Access); err != nil {
		t.Fatal(err)
	}
	if live(t, rl, sessionOf(byRefresh)) || live(t, rl, sessionOf(byAccess)) {
		t.Fatal("EndSession left its session live")
	}
	if !live(t, rl, sessionOf(kept)) {
		t.Fatal("EndSession ended the session of the access token it was not to use")
	}
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "logout", "logout")
}

func TestSessionCheckAfterLogout(t *testing.T) {
	rl := coretest.New(t, account.Config{SessionCheck: true})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	other := signIn(t, rl, "ada@example.com")
	caller, err := rl.Sessions.Check(ctx, p.Access, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.Sessions.Logout(ctx, origin, caller, p.Refresh); err != nil {
		t.Fatal(err)
	}
	// The session cache answers from at most 2 s ago (service.go).
	rl.Clock.Advance(3 * time.Second)
	_, err = rl.Sessions.Check(ctx, p.Access, false)
	wantRefusal(t, err, account.Unauthenticated, "Session is no longer active.", "token_not_valid")
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("%v, want ErrSessionEnded", err)
	}
	if _, err := rl.Sessions.Check(ctx, other.Access, false); err != nil {
		t.Fatalf("the other session: %v", err)
	}
}

func TestCheckWithoutSessionCheck(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	caller, err := rl.Sessions.Check(ctx, p.Access, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.Sessions.Logout(ctx, origin, caller, p.Refresh); err != nil {
		t.Fatal(err)
	}
	// Without the realm's session check the token is good until it
	// expires; asked for, or for a flow that changes credentials, the
	// session is checked.
	if _, err := rl.Sessions.Check(ctx, p.Access, false); err != nil {
		t.Fatalf("Check without the session check: %v", err)
	}
	_, err = rl.Sessions.Check(ctx, p.Access, true)
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("Check with the session check: %v, want ErrSessionEnded", err)
	}
	if _, err := rl.Sessions.LiveAccess(ctx, p.Access); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("LiveAccess: %v, want ErrSessionEnded", err)
	}
	_, err = rl.Sessions.Check(ctx, "", false)
	wantRefusal(t, err, account.Unauthenticated, account.MsgNoCredentials, "")
	rl.Clock.Advance(30*time.Minute + time.Second)
	_, err = rl.Sessions.Check(ctx, p.Access, false)
	if r := wantRefusal(t, err, account.Unauthenticated, "Given token not valid for any token type", "token_not_valid"); r.TokenProblem != "Token is expired" || !errors.Is(err, account.ErrAccessToken) {
		t.Fatalf("expired access token: problem %q, %v", r.TokenProblem, err)
	}
}

// raceN is how many goroutines spend one single-use item at once.
const raceN = 20

// Concurrent rotations of one refresh token without a grace: the first
// to delete its row wins, and every later one finds the row gone, which
// is a reuse and revokes the session (sessions.go, rotateRecorded). So
// exactly one succeeds, and the session ends revoked, the winner's new
// token with it.
func TestRefreshRaceWithoutGrace(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	session := claimsOf(t, rl, p.Refresh, tokens.TypeRefresh).Session

	pairs := make([]account.TokenPair, raceN)
	errs := race(raceN, func(i int) (err error) {
		pairs[i], err = rl.Sessions.Refresh(ctx, origin, p.Refresh, 0)
		return err
	})
	var won []account.TokenPair
	for i, err := range errs {
		if err == nil {
			won = append(won, pairs[i])
			continue
		}
		wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
	}
	if len(won) != 1 {
		t.Fatalf("%d rotations of one token succeeded, want 1", len(won))
	}
	if live(t, rl, session) {
		t.Fatal("the session survived concurrent reuse of its refresh token")
	}
	_, err := rl.Sessions.Refresh(ctx, origin, won[0].Refresh, 0)
	wantRefusal(t, err, account.Unauthenticated, msgTokenInvalid, "token_not_valid")
}

// With the hop's grace, the same concurrent rotations all get the one
// successor and the session stays live.
func TestRefreshRaceWithinGrace(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	session := claimsOf(t, rl, p.Refresh, tokens.TypeRefresh).Session

	pairs := make([]account.TokenPair, raceN)
	errs := race(raceN, func(i int) (err error) {
		pairs[i], err = rl.Sessions.Refresh(ctx, origin, p.Refresh, account.RefreshHopGrace)
		return err
	})
	jtis := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		jtis[claimsOf(t, rl, pairs[i].Refresh, tokens.TypeRefresh).ID] = true
	}
	if len(jtis) != 1 {
		t.Fatalf("%d different successors, want 1", len(jtis))
	}
	if !live(t, rl, session) {
		t.Fatal("the hops revoked the session")
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, pairs[0].Refresh, 0); err != nil {
		t.Fatalf("rotating the successor: %v", err)
	}
}
