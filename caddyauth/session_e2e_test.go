package caddyauth_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
)

const (
	userEmail = "person1@world.com"
	userPass  = "Val1dPasw0rd"
)

func TestLoginE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)

		// L1, L2: blank and missing fields.
		r := s.post("/auth/login/", map[string]string{"email": "", "password": "x"}).expect(t, 400)
		if r.fieldMsg("email") != "This field may not be blank." || r.body["password"] != nil {
			t.Fatalf("blank email: %s", r.raw)
		}
		r = s.post("/auth/login/", nil).expect(t, 400)
		if r.fieldMsg("email") != "This field is required." || r.fieldMsg("password") != "This field is required." {
			t.Fatalf("empty body: %s", r.raw)
		}
		// L3: unknown address and wrong password answer alike.
		for _, body := range []map[string]string{
			{"email": "nobody@world.com", "password": userPass},
			{"email": userEmail, "password": "wrong-password"},
		} {
			r = s.post("/auth/login/", body).expect(t, 401)
			if r.str("code") != "incorrect_credentials" || r.str("detail") != "Incorrect credentials" {
				t.Fatalf("bad credentials: %s", r.raw)
			}
		}
		// L4: success, refresh in an HttpOnly cookie only.
		r = s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
		if r.str("access") == "" || r.body["refresh"] != nil || r.body["password"] != nil {
			t.Fatalf("login body: %s", r.raw)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("content type %q", ct)
		}
		c, ok := r.cookie("refresh_token")
		if !ok || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/auth/" {
			t.Fatalf("refresh cookie: %+v", c)
		}
		ac := claims(t, r.str("access"))
		rc := claims(t, c.Value)
		for k, want := range map[string]any{"token_type": "access", "role": float64(0), "email_verified": true, "iss": "caddy-jwt-allauth"} {
			if got := ac[k]; got != want {
				t.Errorf("access claim %s = %v, want %v", k, got, want)
			}
		}
		if aud, _ := ac["aud"].([]any); len(aud) != 1 || aud[0] != "caddy-jwt-allauth" {
			t.Errorf("access aud = %v", ac["aud"])
		}
		if ac["user_id"] != rc["user_id"] || ac["sub"] != ac["user_id"] || ac["session"] != rc["session"] || rc["token_type"] != "refresh" {
			t.Fatalf("claims disagree: %v / %v", ac, rc)
		}
		if len(rc["jti"].(string)) != 32 || len(rc["session"].(string)) != 32 || rc["session_iat"] == nil {
			t.Fatalf("refresh claims: %v", rc)
		}
		st, err := caddyauth.ActiveStore()
		if err != nil {
			t.Fatal(err)
		}
		if live, err := st.SessionActive(context.Background(), rc["session"].(string)); err != nil || !live {
			t.Fatalf("session not whitelisted: %v %v", live, err)
		}
		// L5: the access token opens /user/.
		s.get("/auth/user/").expect(t, 401)
		r = s.get("/auth/user/", bearer(r.str("access"))).expect(t, 200)
		if r.str("email") != userEmail || r.body["role"] != nil {
			t.Fatalf("user: %s", r.raw)
		}
		// L6: case and white space do not matter.
		s.post("/auth/login/", map[string]string{"email": "  PERSON1@World.com ", "password": userPass}).expect(t, 200)
		// Paths answer without the trailing slash too.
		s.post("/auth/login", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
		// L7: a disabled account.
		if err := st.SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}
		r = s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
		if r.str("detail") != "No active account found with the given credentials" || r.body["code"] != nil {
			t.Fatalf("inactive: %s", r.raw)
		}
		// L8: other methods.
		for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			r = s.req(m, "/auth/login/", nil).expect(t, 405)
			if r.str("detail") != `Method "`+m+`" not allowed.` {
				t.Fatalf("405 body: %s", r.raw)
			}
		}
	})
}

func TestLoginBodyModeE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "refresh_token body", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		r := s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 200)
		if _, ok := r.cookie("refresh_token"); ok || r.str("refresh") == "" {
			t.Fatalf("body mode login: %s %v", r.raw, r.header)
		}
		// Refresh reads the body field only.
		s.post("/auth/refresh/", nil, refreshCookie(r.str("refresh"))).expect(t, 400)
		r2 := s.post("/auth/refresh/", map[string]string{"refresh": r.str("refresh")}).expect(t, 200)
		if r2.str("refresh") == "" || r2.str("access") == "" {
			t.Fatalf("body mode refresh: %s", r2.raw)
		}
		// L9: logout with the body token leaves the session gone.
		s.post("/auth/logout/", map[string]string{"refresh": r2.str("refresh")}, bearer(r2.str("access"))).expect(t, 200)
		s.post("/auth/refresh/", map[string]string{"refresh": r2.str("refresh")}).expect(t, 401)
	})
}

func TestRefreshRotationE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)

		// R1, R2.
		r := s.post("/auth/refresh/", nil).expect(t, 400)
		if r.fieldMsg("refresh") != "This field is required." {
			t.Fatalf("no token: %s", r.raw)
		}
		r = s.post("/auth/refresh/", nil, refreshCookie("dummy_refresh")).expect(t, 401)
		if r.str("code") != "token_not_valid" {
			t.Fatalf("dummy: %s", r.raw)
		}
		// R3: rotation.
		_, t0 := s.login(userEmail, userPass)
		advance(t, 2*time.Second)
		r = s.post("/auth/refresh/", nil, refreshCookie(t0)).expect(t, 200)
		c, ok := r.cookie("refresh_token")
		if !ok || r.str("access") == "" || r.body["refresh"] != nil {
			t.Fatalf("rotation: %s", r.raw)
		}
		t1 := c.Value
		c0, c1 := claims(t, t0), claims(t, t1)
		if c0["jti"] == c1["jti"] || c0["session"] != c1["session"] || c0["session_iat"] != c1["session_iat"] ||
			c1["exp"].(float64) <= c0["exp"].(float64) || c1["iat"].(float64) <= c0["iat"].(float64) {
			t.Fatalf("rotated claims: %v -> %v", c0, c1)
		}
		// A refresh token is never an access token, nor the reverse.
		s.get("/", bearer(t1)).expect(t, 401)
		s.post("/auth/refresh/", nil, refreshCookie(r.str("access"))).expect(t, 401)
		// R3 replay, R4 targeted: another session survives.
		_, other := s.login(userEmail, userPass)
		r = s.post("/auth/refresh/", nil, refreshCookie(t0)).expect(t, 401)
		if r.str("code") != "token_not_valid" {
			t.Fatalf("replay: %s", r.raw)
		}
		s.post("/auth/refresh/", nil, refreshCookie(t1)).expect(t, 401)
		st, _ := caddyauth.ActiveStore()
		if live, _ := st.SessionActive(context.Background(), c0["session"].(string)); live {
			t.Fatal("replayed session still has rows")
		}
		r = s.post("/auth/refresh/", nil, refreshCookie(other)).expect(t, 200)
		other, _ = func() (string, bool) { c, ok := r.cookie("refresh_token"); return c.Value, ok }()
		// R9: the role is re-read at rotation.
		if err := st.SetRole(context.Background(), u.ID, 1000); err != nil {
			t.Fatal(err)
		}
		r = s.post("/auth/refresh/", nil, refreshCookie(other)).expect(t, 200)
		if claims(t, r.str("access"))["role"] != float64(1000) {
			t.Fatalf("role not re-read: %v", claims(t, r.str("access")))
		}
		other = mustCookie(t, r)
		// R8: expired.
		advance(t, 15*24*time.Hour)
		r = s.post("/auth/refresh/", nil, refreshCookie(other)).expect(t, 401)
		if r.str("detail") != "Token is expired" {
			t.Fatalf("expired: %s", r.raw)
		}
		// R15.
		for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			s.req(m, "/auth/refresh/", nil).expect(t, 405)
		}
	})
}

func mustCookie(t *testing.T, r reply) string {
	t.Helper()
	c, ok := r.cookie("refresh_token")
	if !ok {
		t.Fatalf("no refresh cookie: %s", r.raw)
	}
	return c.Value
}

func TestRefreshInactiveUserE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		_, t0 := s.login(userEmail, userPass)
		_, t1 := s.login(userEmail, userPass)
		st, _ := caddyauth.ActiveStore()
		if err := st.SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(t0)).expect(t, 401)
		// R10: every session of the user is gone.
		if err := st.SetActive(context.Background(), u.ID, true); err != nil {
			t.Fatal(err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(t1)).expect(t, 401)
	})
}

func TestSessionLifetimeE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "session_lifetime 1h", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		access, t0 := s.login(userEmail, userPass)
		iat := claims(t, t0)["session_iat"].(float64)
		if exp := claims(t, access)["exp"].(float64); exp > iat+3600 {
			t.Fatalf("access exp %v beyond the session cap %v", exp, iat+3600)
		}
		advance(t, 59*time.Minute)
		r := s.post("/auth/refresh/", nil, refreshCookie(t0)).expect(t, 200)
		t1 := mustCookie(t, r)
		c1 := claims(t, t1)
		if c1["exp"].(float64) != iat+3600 || claims(t, r.str("access"))["exp"].(float64) != iat+3600 || c1["session_iat"].(float64) != iat {
			t.Fatalf("capped exp: %v (session_iat %v)", c1, iat)
		}
		advance(t, 2*time.Minute)
		r = s.post("/auth/refresh/", nil, refreshCookie(t1)).expect(t, 401)
		if r.str("code") != "token_not_valid" && r.str("code") != "session_expired" {
			t.Fatalf("after the cap: %s", r.raw)
		}
	})
}

func TestRefreshRaceE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		_, t0 := s.login(userEmail, userPass)
		const n = 50
		statuses := make(chan int, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				req, _ := http.NewRequest(http.MethodPost, testBase+"/auth/refresh/", nil)
				req.Header.Set("Cookie", "refresh_token="+t0)
				res, err := s.client.Do(req)
				if err != nil {
					statuses <- 0
					return
				}
				res.Body.Close()
				statuses <- res.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		close(statuses)
		counts := map[int]int{}
		for st := range statuses {
			counts[st]++
		}
		if counts[200] != 1 || counts[401] != n-1 {
			t.Fatalf("50 concurrent refreshes: %v, want one 200 and 49 401", counts)
		}
		st, _ := caddyauth.ActiveStore()
		if live, err := st.SessionActive(context.Background(), claims(t, t0)["session"].(string)); err != nil || live {
			t.Fatalf("session still live after the race (live=%v err=%v)", live, err)
		}
	})
}

func TestLogoutE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "session_check", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		mustCreateUser(t, "other@world.com", userPass, 0)
		// O1.
		r := s.post("/auth/logout/", nil).expect(t, 401)
		if r.str("detail") != "Authentication credentials were not provided." || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Fatalf("no bearer: %s %v", r.raw, r.header)
		}
		a0, t0 := s.login(userEmail, userPass)
		a9, t9 := s.login(userEmail, userPass)
		_, foreign := s.login("other@world.com", userPass)
		// O4: no cookie.
		r = s.post("/auth/logout/", nil, bearer(a0)).expect(t, 400)
		if r.str("detail") != "Refresh token cookie not found." {
			t.Fatalf("no cookie: %s", r.raw)
		}
		// O3: someone else's token, garbage.
		if r = s.post("/auth/logout/", nil, bearer(a0), refreshCookie(foreign)).expect(t, 400); r.str("detail") != "Invalid token." {
			t.Fatalf("foreign: %s", r.raw)
		}
		s.post("/auth/logout/", nil, bearer(a0), refreshCookie("dummy")).expect(t, 400)
		s.post("/auth/refresh/", nil, refreshCookie(foreign)).expect(t, 200)
		// O2/O4: success removes only that session and clears the cookie.
		r = s.post("/auth/logout/", map[string]string{"refresh": t9}, bearer(a0), refreshCookie(t0)).expect(t, 200)
		if r.str("detail") != "Successfully logged out." {
			t.Fatalf("logout: %s", r.raw)
		}
		if c, ok := r.cookie("refresh_token"); !ok || c.MaxAge >= 0 {
			t.Fatalf("cookie not cleared: %v", r.header)
		}
		s.post("/auth/refresh/", nil, refreshCookie(t0)).expect(t, 401)
		// Second logout with the same token.
		s.post("/auth/logout/", nil, bearer(a9), refreshCookie(t0)).expect(t, 400)
		// O7 with session_check: the closed session's access token is dead
		// once the cache (a few seconds) has passed.
		advance(t, 3*time.Second)
		r = s.get("/auth/user/", bearer(a0)).expect(t, 401)
		if r.str("detail") != "Session is no longer active." {
			t.Fatalf("session check: %s", r.raw)
		}
		s.get("/auth/user/", bearer(a9)).expect(t, 200)
		// O5.
		r = s.post("/auth/logout-all/", nil, bearer(a9)).expect(t, 200)
		if r.str("detail") != "Successfully logged out from all devices." {
			t.Fatalf("logout-all: %s", r.raw)
		}
		s.post("/auth/refresh/", nil, refreshCookie(t9)).expect(t, 401)
		s.req("GET", "/auth/logout/", nil).expect(t, 405)
		s.req("GET", "/auth/logout-all/", nil).expect(t, 405)
	})
}

func TestUserDetailsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		a, _ := s.login(userEmail, userPass)
		for _, m := range []string{"PUT", "POST"} {
			s.req(m, "/auth/user/", nil, bearer(a)).expect(t, 405)
		}
		// DELETE deletes the account (deletion_e2e_test.go), given the
		// password.
		if r := s.req("DELETE", "/auth/user/", nil, bearer(a)).expect(t, 400); r.fieldMsg("password") != "This field is required." {
			t.Fatalf("DELETE /user/ without a password: %s", r.raw)
		}
		r := s.req("PATCH", "/auth/user/", map[string]any{"first_name": "John", "last_name": "Smith", "email": "x@evil.com", "role": 1000, "extra": 1}, bearer(a)).expect(t, 200)
		if r.str("first_name") != "John" || r.str("last_name") != "Smith" || r.str("email") != userEmail {
			t.Fatalf("patch: %s", r.raw)
		}
		s.req("PATCH", "/auth/user/", nil, bearer(a)).expect(t, 200)
		r = s.req("PATCH", "/auth/user/", map[string]any{"first_name": nil}, bearer(a)).expect(t, 400)
		if r.fieldMsg("first_name") != "This field may not be null." {
			t.Fatalf("null name: %s", r.raw)
		}
		r = s.req("PATCH", "/auth/user/", map[string]any{"first_name": strings.Repeat("a", 151)}, bearer(a)).expect(t, 400)
		if r.fieldMsg("first_name") != "Ensure this field has no more than 150 characters." {
			t.Fatalf("long name: %s", r.raw)
		}
		r = s.get("/auth/user/", bearer(a)).expect(t, 200)
		if r.str("first_name") != "John" || r.body["role"] != nil {
			t.Fatalf("get after patch: %s", r.raw)
		}
		// Refresh after the role field was sent: still role 0.
		a2, _ := s.login(userEmail, userPass)
		if claims(t, a2)["role"] != float64(0) {
			t.Fatal("role was patched")
		}
	})
}
