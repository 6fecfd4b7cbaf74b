package account_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/useragent"
)

// The owner's list of sessions and remote sign-out (mysessions.go).

const (
	laptopUA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	phoneUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

var (
	laptop = account.Origin{IP: "192.0.2.10", Host: origin.Host, Site: origin.Site, UserAgent: laptopUA}
	phone  = account.Origin{IP: "198.51.100.7", Host: origin.Host, Site: origin.Site, UserAgent: phoneUA}
)

// signInFrom logs in from o and wants a session.
func signInFrom(t *testing.T, rl *coretest.Realm, o account.Origin, email string) account.TokenPair {
	t.Helper()
	step, err := rl.Sessions.Login(ctx, o, email, password)
	if err != nil || step.Pending() {
		t.Fatalf("login %s: %+v, %v", email, step, err)
	}
	return step.Pair
}

// sessionsOf lists the sessions of access's owner.
func sessionsOf(t *testing.T, rl *coretest.Realm, access string) []account.SessionInfo {
	t.Helper()
	list, err := rl.Sessions.List(ctx, access)
	if err != nil {
		t.Fatalf("listing sessions: %v", err)
	}
	return list
}

func TestSessionList(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	newUser(t, rl, "alice@example.com")
	start := rl.Clock.Now()
	onLaptop := signInFrom(t, rl, laptop, "alice@example.com")
	rl.Clock.Advance(time.Minute)
	onPhone := signInFrom(t, rl, phone, "alice@example.com")

	list := sessionsOf(t, rl, onLaptop.Access)
	if len(list) != 2 {
		t.Fatalf("%d sessions, want 2: %+v", len(list), list)
	}
	// The most recently used first: the phone's.
	p, l := list[0], list[1]
	if p.Current || !l.Current {
		t.Fatalf("current: phone %v, laptop %v; want the laptop's (the caller's) only", p.Current, l.Current)
	}
	if p.IP != phone.IP || p.UserAgent != phoneUA || p.Agent != (useragent.Agent{Browser: "Safari 17", OS: "iOS 17.5", Device: useragent.Mobile}) {
		t.Fatalf("the phone's session: %+v", p)
	}
	if l.IP != laptop.IP || l.UserAgent != laptopUA || l.Agent != (useragent.Agent{Browser: "Chrome 126", OS: "macOS", Device: useragent.Desktop}) {
		t.Fatalf("the laptop's session: %+v", l)
	}
	if d := l.Started.Sub(start); d < 0 || d > time.Second || !l.LastUsed.Equal(l.Started) {
		t.Fatalf("the laptop's session started %v, last used %v; want both at %v", l.Started, l.LastUsed, start)
	}
	if !p.Started.After(l.Started) {
		t.Fatalf("the phone's session started %v, not after the laptop's %v", p.Started, l.Started)
	}
	// The ids are opaque: neither the session id nor a jti of any token.
	laptopClaims := claimsOf(t, rl, onLaptop.Refresh, "refresh")
	phoneClaims := claimsOf(t, rl, onPhone.Refresh, "refresh")
	for _, s := range list {
		if len(s.ID) != 32 || s.ID == laptopClaims.Session || s.ID == phoneClaims.Session || strings.Contains(s.ID, laptopClaims.Session) {
			t.Fatalf("session id %q", s.ID)
		}
	}
	if p.ID == l.ID {
		t.Fatal("two sessions listed under one id")
	}
	// The phone's own list says the phone's is current.
	if own := sessionsOf(t, rl, onPhone.Access); len(own) != 2 || !own[0].Current || own[1].Current || own[0].ID != p.ID {
		t.Fatalf("the phone's list: %+v", own)
	}

	// A refresh from elsewhere moves the last use and the address, and
	// keeps the start and the user agent of the sign-in.
	rl.Clock.Advance(10 * time.Minute)
	elsewhere := account.Origin{IP: "203.0.113.5", Host: origin.Host, Site: origin.Site, UserAgent: "curl/8.5.0"}
	rotated, err := rl.Sessions.Refresh(ctx, elsewhere, onLaptop.Refresh, 0)
	if err != nil {
		t.Fatal(err)
	}
	list = sessionsOf(t, rl, rotated.Access)
	if len(list) != 2 || list[0].ID != l.ID {
		t.Fatalf("after the refresh, the laptop's session is not first (or changed its id): %+v", list)
	}
	r := list[0]
	if !r.Started.Equal(l.Started) || r.LastUsed.Sub(rl.Clock.Now()).Abs() > time.Second || r.IP != elsewhere.IP || r.UserAgent != laptopUA || !r.Current {
		t.Fatalf("after the refresh: %+v (before: %+v)", r, l)
	}

	// An ended session lists nothing.
	if err := rl.Sessions.LogoutAll(ctx, origin, rotated.Access); err != nil {
		t.Fatal(err)
	}
	_, err = rl.Sessions.List(ctx, rotated.Access)
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("listing from an ended session: %v", err)
	}
}

func TestSessionRevoke(t *testing.T) {
	rl := coretest.New(t, account.Config{SessionCheck: true})
	alice := newUser(t, rl, "alice@example.com")
	newUser(t, rl, "bob@example.com")
	onLaptop := signInFrom(t, rl, laptop, "alice@example.com")
	onPhone := signInFrom(t, rl, phone, "alice@example.com")
	bob := signInFrom(t, rl, laptop, "bob@example.com")
	var phoneID string
	for _, s := range sessionsOf(t, rl, onLaptop.Access) {
		if !s.Current {
			phoneID = s.ID
		}
	}

	// Another user's session is not found, and stays.
	_, err := rl.Sessions.Revoke(ctx, laptop, bob.Access, phoneID)
	wantRefusal(t, err, account.NotFound, "Not found.", "")
	_, err = rl.Sessions.Revoke(ctx, laptop, onLaptop.Access, "no-such-session")
	wantRefusal(t, err, account.NotFound, "Not found.", "")
	if n := len(sessionsOf(t, rl, onLaptop.Access)); n != 2 {
		t.Fatalf("after refused revocations: %d sessions, want 2", n)
	}

	// The laptop signs the phone out.
	current, err := rl.Sessions.Revoke(ctx, laptop, onLaptop.Access, phoneID)
	if err != nil || current {
		t.Fatalf("revoking the phone: current %v, %v", current, err)
	}
	if _, err := rl.Sessions.Refresh(ctx, phone, onPhone.Refresh, 0); !account.IsRefusal(err) {
		t.Fatalf("the phone's refresh after its revocation: %v", err)
	}
	// With session_check its access token fails once the cache has passed.
	rl.Clock.Advance(3 * time.Second)
	if _, err := rl.Sessions.Check(ctx, onPhone.Access, false); !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("the phone's access token after its revocation: %v", err)
	}
	if _, err := rl.Sessions.Check(ctx, onLaptop.Access, false); err != nil {
		t.Fatalf("the laptop's access token: %v", err)
	}
	if list := sessionsOf(t, rl, onLaptop.Access); len(list) != 1 || !list[0].Current {
		t.Fatalf("after revoking the phone: %+v", list)
	}
	// The revocation's line, then the phone's refused refresh's.
	wantStrings(t, "session_revoked reasons", reasons(rl, "session_revoked"), "remote_signout", "refresh_not_whitelisted")
	if ev := rl.Audit.Events("session_revoked")[0]; ev.Attrs["user_id"] != strconv.FormatInt(alice.ID, 10) || ev.Attrs["client_ip"] != laptop.IP {
		t.Fatalf("the revocation's audit line: %+v", ev)
	}
	_, err = rl.Sessions.Revoke(ctx, laptop, onLaptop.Access, phoneID)
	wantRefusal(t, err, account.NotFound, "Not found.", "")
	// The ended phone can revoke nothing.
	_, err = rl.Sessions.Revoke(ctx, phone, onPhone.Access, phoneID)
	if !errors.Is(err, account.ErrSessionEnded) {
		t.Fatalf("revoking from an ended session: %v", err)
	}

	// Its own session: the caller is told, and is signed out.
	own := sessionsOf(t, rl, onLaptop.Access)[0].ID
	current, err = rl.Sessions.Revoke(ctx, laptop, onLaptop.Access, own)
	if err != nil || !current {
		t.Fatalf("revoking its own session: current %v, %v", current, err)
	}
	if _, err := rl.Sessions.Refresh(ctx, laptop, onLaptop.Refresh, 0); !account.IsRefusal(err) {
		t.Fatalf("refresh after revoking its own session: %v", err)
	}
	if n := len(sessionsOf(t, rl, bob.Access)); n != 1 {
		t.Fatalf("bob's sessions: %d, want 1", n)
	}
}

func TestSessionUserAgentRecording(t *testing.T) {
	t.Run("clipped", func(t *testing.T) {
		rl := coretest.New(t, account.Config{})
		newUser(t, rl, "alice@example.com")
		o := laptop
		o.UserAgent = " " + laptopUA + "\x00" + strings.Repeat("x", 2000)
		list := sessionsOf(t, rl, signInFrom(t, rl, o, "alice@example.com").Access)
		if got := list[0].UserAgent; len(got) != useragent.MaxLen || !strings.HasPrefix(got, laptopUA+"x") || list[0].Agent.Browser != "Chrome 126" {
			t.Fatalf("recorded %d bytes %q, parsed %+v", len(got), got, list[0].Agent)
		}
	})
	t.Run("off", func(t *testing.T) {
		rl := coretest.New(t, account.Config{OmitUserAgent: true})
		newUser(t, rl, "alice@example.com")
		pair := signInFrom(t, rl, laptop, "alice@example.com")
		rows, err := rl.Store.UserRefreshTokens(ctx, 1, rl.Clock.Now())
		if err != nil || len(rows) != 1 || rows[0].UserAgent != "" {
			t.Fatalf("stored rows: %+v, %v", rows, err)
		}
		list := sessionsOf(t, rl, pair.Access)
		if len(list) != 1 || list[0].UserAgent != "" || list[0].Agent != (useragent.Agent{}) || list[0].IP != laptop.IP {
			t.Fatalf("listed: %+v", list)
		}
	})
}
