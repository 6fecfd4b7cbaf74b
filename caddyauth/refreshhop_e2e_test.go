package caddyauth_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// hopGrace is how long the refresh hop takes a just-rotated refresh token
// (account.RefreshHopGrace, caddyauth/account/sessions.go).
const hopGrace = 5 * time.Second

// hopAnswer is what one refresh hop gave the browser.
type hopAnswer struct {
	status                int
	location              string
	access, refresh       string
	accessSet, refreshSet bool
}

// hop sends one browser through GET /auth/page/refresh with refresh as its
// refresh cookie.
func hop(s *site, refresh string) (hopAnswer, error) {
	r, err := s.try(http.MethodGet, "/auth/page/refresh?next=%2Fdash", nil, acceptHTML, refreshCookie(refresh))
	if err != nil {
		return hopAnswer{}, err
	}
	a := hopAnswer{status: r.status, location: r.header.Get("Location")}
	if c, ok := r.cookie("access_token"); ok {
		a.access, a.accessSet = c.Value, true
	}
	if c, ok := r.cookie("refresh_token"); ok {
		a.refresh, a.refreshSet = c.Value, true
	}
	return a, nil
}

// A page's parallel navigations all go through the refresh hop with the
// same refresh cookie: every one ends signed in on the same session, and
// the session stays alive. The spent cookie presented again once the
// grace is over still revokes the session.
func TestRefreshHopConcurrentE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		mustCreateUser(t, userEmail, userPass, 0)
		_, old := s.login(userEmail, userPass)
		session := claims(t, old)["session"].(string)
		advance(t, 31*time.Minute)

		const n = 8
		answers := make([]hopAnswer, n)
		errs := make([]error, n)
		together(n, func(i int) { answers[i], errs[i] = hop(s, old) })
		successors := map[string]bool{}
		for i, a := range answers {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if a.status != http.StatusSeeOther || a.location != "/dash" || !a.accessSet || !a.refreshSet || a.access == "" || a.refresh == "" {
				t.Fatalf("hop %d of %d with the same cookie: %+v, want 303 to /dash with both cookies", i, n, a)
			}
			ac, rc := claims(t, a.access), claims(t, a.refresh)
			if ac["session"] != session || rc["session"] != session {
				t.Fatalf("hop %d: tokens of session %v/%v, want %s", i, ac["session"], rc["session"], session)
			}
			successors[rc["jti"].(string)] = true
			s.get("/dash", acceptHTML, "Cookie: access_token="+a.access).expect(t, 200)
		}
		if len(successors) != 1 {
			t.Fatalf("the hops handed out %d different refresh tokens, want the one successor", len(successors))
		}
		st := activeStore(t)
		if live, err := st.SessionActive(context.Background(), session); err != nil || !live {
			t.Fatalf("session after %d parallel hops: live=%v err=%v", n, live, err)
		}
		// Whichever answer the browser kept, its refresh cookie works.
		next := answers[n-1].refresh
		a, err := hop(s, next)
		if err != nil || a.status != http.StatusSeeOther || a.location != "/dash" {
			t.Fatalf("hop with the successor: %+v %v", a, err)
		}

		// The first spent cookie, after the grace: a reuse, the session ends.
		advance(t, hopGrace+time.Second)
		a, err = hop(s, old)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusSeeOther || a.location != "/auth/page/login?ended=1&next=%2Fdash" {
			t.Fatalf("replay after the grace: %+v, want the login page with ended=1", a)
		}
		if live, err := st.SessionActive(context.Background(), session); err != nil || live {
			t.Fatalf("session after a replay past the grace: live=%v err=%v", live, err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(next)).expect(t, http.StatusUnauthorized)
	})
}

// The grace is the hop's only: POST /refresh/ with a just-rotated token is
// a reuse at once, and within the grace the hop does not bring a session
// back that a logout ended.
func TestRefreshHopGraceLimitsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		mustCreateUser(t, userEmail, userPass, 0)
		st := activeStore(t)

		_, old := s.login(userEmail, userPass)
		s.post("/auth/refresh/", nil, refreshCookie(old)).expect(t, 200)
		s.post("/auth/refresh/", nil, refreshCookie(old)).expect(t, http.StatusUnauthorized)
		if live, _ := st.SessionActive(context.Background(), claims(t, old)["session"].(string)); live {
			t.Fatal("POST /refresh/ took a just-rotated token")
		}

		access, old := s.login(userEmail, userPass)
		a, err := hop(s, old)
		if err != nil || a.status != http.StatusSeeOther || a.location != "/dash" {
			t.Fatalf("hop: %+v %v", a, err)
		}
		s.post("/auth/logout/", nil, bearer(access), refreshCookie(a.refresh)).expect(t, 200)
		if a, err = hop(s, old); err != nil || a.location != "/auth/page/login?ended=1&next=%2Fdash" {
			t.Fatalf("hop within the grace after a logout: %+v %v", a, err)
		}
		if live, _ := st.SessionActive(context.Background(), claims(t, old)["session"].(string)); live {
			t.Fatal("a hop within the grace revived a logged-out session")
		}
	})
}
