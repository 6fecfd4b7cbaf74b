package account_test

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
)

// Personal access tokens (personaltokens.go, patcache.go).

// makeToken makes a token of access's owner and wants no refusal.
func makeToken(t *testing.T, rl *coretest.Realm, access, name string, days int, role *int) account.NewPersonalToken {
	t.Helper()
	tok, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: access, Name: name, ExpiresInDays: days, Role: role})
	if err != nil {
		t.Fatalf("creating token %q: %v", name, err)
	}
	return tok
}

// fieldRefusal wants an Invalid refusal with a message on field.
func fieldRefusal(t *testing.T, err error, field string) {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) || r.Kind != account.Invalid || len(r.Fields[field]) == 0 {
		t.Fatalf("got %v, want a refusal of the field %s", err, field)
	}
}

func TestPersonalTokenLifecycle(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "alice@example.com")
	newUser(t, rl, "bob@example.com")
	p := signIn(t, rl, "alice@example.com")
	created := rl.Clock.Now()
	tok := makeToken(t, rl, p.Access, "backup", 30, nil)
	if !strings.HasPrefix(tok.Token, "jat_") || len(tok.Token) != 47 || strings.Contains(tok.Token, ".") || !account.IsPersonalToken(tok.Token) {
		t.Fatalf("token %q", tok.Token)
	}
	if tok.Name != "backup" || tok.Role != account.RoleUser || tok.Expires.Sub(tok.Created) != 30*24*time.Hour || tok.Created.Before(created) {
		t.Fatalf("made %+v", tok.PersonalToken)
	}
	if tok.Hash == tok.Token || strings.Contains(tok.Hash, tok.Token[4:]) {
		t.Fatal("the secret is kept as it is")
	}
	c, err := rl.PersonalTokens.Check(ctx, tok.Token)
	if err != nil || c.UserID != strconv.FormatInt(u.ID, 10) || c.Role != account.RoleUser || c.Session != "" {
		t.Fatalf("Check: %+v, %v", c, err)
	}
	// Used: last_used is written.
	list, err := rl.PersonalTokens.List(ctx, p.Access)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].LastUsed.IsZero() {
		t.Fatalf("List: %+v, %v", list, err)
	}

	// Another user's id is not found; a garbled one neither.
	other := signIn(t, rl, "bob@example.com")
	wantKind(t, rl.PersonalTokens.Revoke(ctx, origin, other.Access, strconv.FormatInt(tok.ID, 10)), account.NotFound)
	wantKind(t, rl.PersonalTokens.Revoke(ctx, origin, p.Access, "x"), account.NotFound)
	if _, err := rl.PersonalTokens.Check(ctx, tok.Token); err != nil {
		t.Fatalf("after another's revocation: %v", err)
	}
	// Revoked on this node: refused at once, cache or not.
	if err := rl.PersonalTokens.Revoke(ctx, origin, p.Access, strconv.FormatInt(tok.ID, 10)); err != nil {
		t.Fatal(err)
	}
	_, err = rl.PersonalTokens.Check(ctx, tok.Token)
	wantKind(t, err, account.Unauthenticated)
	wantKind(t, rl.PersonalTokens.Revoke(ctx, origin, p.Access, strconv.FormatInt(tok.ID, 10)), account.NotFound)
	if ev := rl.Audit.Events("token_created"); len(ev) != 1 || ev[0].Attrs["token_id"] != strconv.FormatInt(tok.ID, 10) {
		t.Fatalf("token_created lines: %+v", ev)
	}
	if ev := rl.Audit.Events("token_revoked"); len(ev) != 1 || ev[0].Attrs["user_id"] != strconv.FormatInt(u.ID, 10) {
		t.Fatalf("token_revoked lines: %+v", ev)
	}
	for _, r := range rl.Audit.All() {
		for _, v := range r.Attrs {
			if strings.Contains(v, tok.Token[4:]) {
				t.Fatalf("an audit line carries the secret: %+v", r)
			}
		}
	}
}

func TestPersonalTokenLimits(t *testing.T) {
	rl := coretest.New(t, account.Config{PersonalTokenMaxTTL: 30 * 24 * time.Hour,
		Throttles: map[string]account.Throttle{"token_create_ip": {}}})
	if _, err := rl.Users.Create(ctx, "staff@example.com", password, account.RoleSuperuser); err != nil {
		t.Fatal(err)
	}
	p := signIn(t, rl, "staff@example.com")
	req := func(days int, role *int) error {
		_, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: p.Access, Name: "n", ExpiresInDays: days, Role: role})
		return err
	}
	fieldRefusal(t, req(0, nil), "expires_in_days")
	fieldRefusal(t, req(31, nil), "expires_in_days")
	staff, user, negative := account.RoleStaff, account.RoleUser, -1
	fieldRefusal(t, req(30, &staff), "role")
	fieldRefusal(t, req(30, &negative), "role")
	if tok := makeToken(t, rl, p.Access, "full", 30, nil); tok.Role != account.RoleSuperuser {
		t.Fatalf("default role %d", tok.Role)
	}
	low := makeToken(t, rl, p.Access, "low", 1, &user)
	if c, err := rl.PersonalTokens.Check(ctx, low.Token); err != nil || c.Role != account.RoleUser {
		t.Fatalf("a token of role 0: %+v, %v", c, err)
	}
	for i := 2; i < 50; i++ {
		makeToken(t, rl, p.Access, "n"+strconv.Itoa(i), 1, nil)
	}
	_, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: p.Access, Name: "one too many", ExpiresInDays: 1})
	wantKind(t, err, account.Invalid)

	// A role change since: the token carries its owner's role no more and
	// is refused, never given another role (roles are labels, not ranks).
	_, err = rl.PersonalTokens.Check(ctx, makeTokenAfterDemotion(t, rl))
	wantKind(t, err, account.Unauthenticated)
	// A custom role makes no token of another role: 5000 is not above 1000.
	if _, err := rl.Users.Create(ctx, "custom@example.com", password, 5000); err != nil {
		t.Fatal(err)
	}
	pc := signIn(t, rl, "custom@example.com")
	for _, role := range []int{account.RoleStaff, account.RoleSuperuser, 4999} {
		_, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: pc.Access, Name: "n", ExpiresInDays: 1, Role: &role})
		fieldRefusal(t, err, "role")
	}
}

// makeTokenAfterDemotion is a token made while the owner was a superuser,
// checked only after the owner became a plain user.
func makeTokenAfterDemotion(t *testing.T, rl *coretest.Realm) string {
	t.Helper()
	if _, err := rl.Users.Create(ctx, "demoted@example.com", password, account.RoleSuperuser); err != nil {
		t.Fatal(err)
	}
	p := signIn(t, rl, "demoted@example.com")
	tok := makeToken(t, rl, p.Access, "kept", 1, nil)
	if _, err := rl.Users.SetRole(ctx, "demoted@example.com", account.RoleUser); err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

func TestPersonalTokenThrottle(t *testing.T) {
	rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{"token_create_ip": {Limit: 2, Window: time.Minute}}})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	makeToken(t, rl, p.Access, "one", 1, nil)
	makeToken(t, rl, p.Access, "two", 1, nil)
	_, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: p.Access, Name: "three", ExpiresInDays: 1})
	wantKind(t, err, account.Throttled)
	rl.Clock.Advance(time.Minute)
	makeToken(t, rl, p.Access, "three", 1, nil)
}

func TestPersonalTokenNeedsRecentAuthentication(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	rl.Clock.Advance(11 * time.Minute) // past reauth_window
	in := account.TokenRequest{Access: p.Access, Name: "n", ExpiresInDays: 1}
	_, err := rl.PersonalTokens.Create(ctx, origin, in)
	wantRefusal(t, err, account.Forbidden, account.MsgReauthRequired, "reauthentication_required")
	in.Password = "wrong password"
	_, err = rl.PersonalTokens.Create(ctx, origin, in)
	wantKind(t, err, account.Invalid)
	in.Password = password
	if _, err := rl.PersonalTokens.Create(ctx, origin, in); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	// A session that ended makes none, even with the password.
	if err := rl.Sessions.LogoutAll(ctx, origin, p.Access); err != nil {
		t.Fatal(err)
	}
	_, err = rl.PersonalTokens.Create(ctx, origin, in)
	wantKind(t, err, account.Unauthenticated)
}

func TestPersonalTokenIsNoAccessToken(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	tok := makeToken(t, rl, p.Access, "script", 1, nil)
	if _, err := rl.Sessions.Check(ctx, tok.Token, false); err == nil {
		t.Fatal("a personal token passed as an access token")
	}
	if _, err := rl.Sessions.LiveAccess(ctx, tok.Token); err == nil {
		t.Fatal("a personal token passed as a live access token")
	}
	_, err := rl.PersonalTokens.Create(ctx, origin, account.TokenRequest{Access: tok.Token, Password: password, Name: "more", ExpiresInDays: 1})
	wantKind(t, err, account.Unauthenticated)
	_, err = rl.PersonalTokens.List(ctx, tok.Token)
	wantKind(t, err, account.Unauthenticated)
	// And an access token is no personal token.
	_, err = rl.PersonalTokens.Check(ctx, p.Access)
	wantKind(t, err, account.Unauthenticated)
	_, err = rl.PersonalTokens.Check(ctx, "jat_"+strings.Repeat("A", 43))
	wantKind(t, err, account.Unauthenticated)
}

func TestPersonalTokenExpiry(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	tok := makeToken(t, rl, p.Access, "a day", 1, nil)
	rl.Clock.Advance(24*time.Hour - time.Second)
	if _, err := rl.PersonalTokens.Check(ctx, tok.Token); err != nil {
		t.Fatalf("a second before expiry: %v", err)
	}
	// Cached a moment ago, and still refused once expired.
	rl.Clock.Advance(time.Second)
	_, err := rl.PersonalTokens.Check(ctx, tok.Token)
	wantKind(t, err, account.Unauthenticated)
}

// A change made elsewhere (another node's revocation, a disabled owner)
// takes effect within the cache's lifetime, not later.
func TestPersonalTokenCacheWindow(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	u := newUser(t, rl, "alice@example.com")
	newUser(t, rl, "bob@example.com")
	p := signIn(t, rl, "alice@example.com")
	revoked := makeToken(t, rl, p.Access, "revoked elsewhere", 1, nil)
	bob := signIn(t, rl, "bob@example.com")
	disabled := makeToken(t, rl, bob.Access, "owner disabled", 1, nil)
	for _, tok := range []string{revoked.Token, disabled.Token} {
		if _, err := rl.PersonalTokens.Check(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := rl.Store.DeletePersonalToken(ctx, u.ID, revoked.ID); !ok || err != nil {
		t.Fatalf("deleting the row: %v %v", ok, err)
	}
	if _, err := rl.Users.Disable(ctx, "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	rl.Clock.Advance(account.PersonalTokenCacheTTL - time.Second)
	for _, tok := range []string{revoked.Token, disabled.Token} {
		if _, err := rl.PersonalTokens.Check(ctx, tok); err != nil {
			t.Fatalf("inside the cache window: %v", err)
		}
	}
	rl.Clock.Advance(time.Second)
	for _, tok := range []string{revoked.Token, disabled.Token} {
		_, err := rl.PersonalTokens.Check(ctx, tok)
		wantKind(t, err, account.Unauthenticated)
	}
}

// last_used is written at most once a minute, however often the token
// is used.
func TestPersonalTokenLastUsed(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	tok := makeToken(t, rl, p.Access, "busy", 1, nil)
	lastUsed := func() time.Time {
		got, err := rl.Store.PersonalTokenByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastUsed
	}
	start := rl.Clock.Now()
	if _, err := rl.PersonalTokens.Check(ctx, tok.Token); err != nil {
		t.Fatal(err)
	}
	first := lastUsed()
	if first.Before(start.Add(-time.Millisecond)) {
		t.Fatalf("last_used %v, want about %v", first, start)
	}
	for range 11 { // 55 s of uses, the cache missed every 5 s
		rl.Clock.Advance(account.PersonalTokenCacheTTL)
		if _, err := rl.PersonalTokens.Check(ctx, tok.Token); err != nil {
			t.Fatal(err)
		}
	}
	if got := lastUsed(); !got.Equal(first) {
		t.Fatalf("last_used moved within a minute: %v, then %v", first, got)
	}
	rl.Clock.Advance(account.PersonalTokenCacheTTL)
	if _, err := rl.PersonalTokens.Check(ctx, tok.Token); err != nil {
		t.Fatal(err)
	}
	if got := lastUsed(); !got.After(first.Add(59 * time.Second)) {
		t.Fatalf("last_used after a minute: %v, was %v", got, first)
	}
}

// Many uses while the owner revokes: none fails oddly, and once the
// cache's lifetime has passed every use is refused.
func TestPersonalTokenRaceRevoke(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	p := signIn(t, rl, "alice@example.com")
	tok := makeToken(t, rl, p.Access, "contested", 1, nil)
	var wg sync.WaitGroup
	var odd atomic.Value
	stop := make(chan struct{})
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := rl.PersonalTokens.Check(ctx, tok.Token)
				var r *account.Refusal
				if err != nil && (!errors.As(err, &r) || r.Kind != account.Unauthenticated) {
					odd.Store(err)
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := rl.PersonalTokens.Revoke(ctx, origin, p.Access, strconv.FormatInt(tok.ID, 10)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := odd.Load(); err != nil {
		t.Fatalf("a use failed otherwise than refused: %v", err)
	}
	rl.Clock.Advance(account.PersonalTokenCacheTTL)
	for range 20 {
		_, err := rl.PersonalTokens.Check(ctx, tok.Token)
		wantKind(t, err, account.Unauthenticated)
	}
}

// A token is a credential: disabling the account ends it for good (an
// enabled account gets none back), and so does a password change.
func TestPersonalTokenEndsWithCredentials(t *testing.T) {
	rl := coretest.New(t, account.Config{Throttles: map[string]account.Throttle{"token_create_ip": {}}})
	newUser(t, rl, "ada@example.com")
	p := signIn(t, rl, "ada@example.com")
	tok := makeToken(t, rl, p.Access, "backup", 30, nil)
	if _, err := rl.Users.Disable(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Users.Enable(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	rl.Clock.Advance(6 * time.Second) // past the guard's cache window
	_, err := rl.PersonalTokens.Check(ctx, tok.Token)
	wantKind(t, err, account.Unauthenticated)

	p = signIn(t, rl, "ada@example.com")
	tok = makeToken(t, rl, p.Access, "backup", 30, nil)
	if _, err := rl.Passwords.Change(ctx, origin, p.Access, account.PasswordChange{Old: password, NewPassword: account.NewPassword{Password1: "an0ther-Passw0rd-x", Password2: "an0ther-Passw0rd-x"}}); err != nil {
		t.Fatal(err)
	}
	rl.Clock.Advance(6 * time.Second)
	_, err = rl.PersonalTokens.Check(ctx, tok.Token)
	wantKind(t, err, account.Unauthenticated)
}
