package caddyauth_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Personal access tokens ({prefix}/tokens/) and the guard's
// access_tokens, against a real Caddy on each store.

// patBody guards /api/ with access_tokens and everything else without.
const patBody = `	jwt_allauth {
		prefix /auth
	}
	handle /api/* {
		jwt_allauth_guard {
			access_tokens
		}
		respond "user={http.auth.user.id} role={http.auth.user.role} session=[{http.auth.user.session}]"
	}
	handle {
		jwt_allauth_guard
		respond "user={http.auth.user.id}"
	}`

// makePAT makes a personal token with access and returns the answer.
func (s *site) makePAT(access string, body map[string]any) reply {
	s.t.Helper()
	return s.post("/auth/tokens/", body, bearer(access)).expect(s.t, 201)
}

func TestPersonalTokensE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "pat_max_ttl 30d", patBody))
		u := mustCreateUser(t, userEmail, userPass, account.RoleSuperuser)
		otherUser := mustCreateUser(t, "other@world.com", userPass, 0)
		access, _ := s.login(userEmail, userPass)
		other, _ := s.login("other@world.com", userPass)
		// The owner is a superuser, an administrator by default: its
		// access token reaches the admin API, its personal token not.
		s.get("/auth/admin/users/", bearer(access)).expect(t, 200)

		// Refused: no bearer, a lifetime past pat_max_ttl, a role above the
		// caller's own.
		s.post("/auth/tokens/", map[string]any{"name": "x", "expires_in_days": 1}).expect(t, 401)
		if r := s.post("/auth/tokens/", map[string]any{"name": "x", "expires_in_days": 31}, bearer(access)).expect(t, 400); r.fieldMsg("expires_in_days") == "" {
			t.Fatalf("no message for expires_in_days: %s", r.raw)
		}
		if r := s.post("/auth/tokens/", map[string]any{"name": "x", "expires_in_days": 1, "role": 1000}, bearer(access)).expect(t, 400); r.fieldMsg("role") == "" {
			t.Fatalf("no message for role: %s", r.raw)
		}
		if r := s.post("/auth/tokens/", map[string]any{"expires_in_days": 1}, bearer(access)).expect(t, 400); r.fieldMsg("name") == "" {
			t.Fatalf("no message for name: %s", r.raw)
		}

		r := s.makePAT(access, map[string]any{"name": "backup", "expires_in_days": 2, "role": 0})
		tok, id := r.str("token"), r.body["id"]
		if !strings.HasPrefix(tok, "jat_") || len(tok) != 47 || r.str("name") != "backup" || !microsTime.MatchString(r.str("created")) || !microsTime.MatchString(r.str("expires")) {
			t.Fatalf("created: %s", r.raw)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("Cache-Control %q", r.header.Get("Cache-Control"))
		}
		full := s.makePAT(access, map[string]any{"name": "full", "expires_in_days": 30}).str("token")

		// The guard with access_tokens lets it through with the token's role
		// and no session; the one without refuses it.
		got := string(s.get("/api/x", bearer(tok)).expect(t, 200).raw)
		if want := fmt.Sprintf("user=%d role=0 session=[]", u.ID); got != want {
			t.Fatalf("guarded answer %q, want %q", got, want)
		}
		if got := string(s.get("/api/x", bearer(full)).expect(t, 200).raw); !strings.Contains(got, "role=900") {
			t.Fatalf("the full token's answer %q", got)
		}
		s.get("/elsewhere", bearer(tok)).expect(t, 401)
		s.get("/api/x", "Cookie: access_token="+tok).expect(t, 401)
		s.get("/api/x", bearer(access)).expect(t, 200) // an access token still works there

		// Listed without the secret, with last_used.
		list := s.get("/auth/tokens/", bearer(access)).expect(t, 200)
		if len(list.list) != 2 || strings.Contains(string(list.raw), tok) || strings.Contains(string(list.raw), full) {
			t.Fatalf("list: %s", list.raw)
		}
		first := list.list[0].(map[string]any)
		if first["name"] != "backup" || first["role"] != float64(0) || first["last_used"] == nil {
			t.Fatalf("first token: %v", first)
		}
		if r := s.get("/auth/tokens/", bearer(other)).expect(t, 200); string(r.raw) != "[]" {
			t.Fatalf("another user's list: %s", r.raw)
		}

		// Never accepted by the account or admin endpoints, and makes no
		// tokens.
		for _, c := range []struct{ method, path string }{
			{"GET", "/auth/user/"}, {"PATCH", "/auth/user/"}, {"POST", "/auth/password/change/"},
			{"POST", "/auth/mfa/setup/"}, {"GET", "/auth/mfa/authenticators/"}, {"GET", "/auth/sessions/"},
			{"POST", "/auth/logout-all/"}, {"GET", "/auth/tokens/"}, {"POST", "/auth/tokens/"},
			{"DELETE", fmt.Sprintf("/auth/tokens/%v/", id)}, {"DELETE", "/auth/user/"},
			{"GET", "/auth/admin/users/"}, {"GET", fmt.Sprintf("/auth/admin/users/%d/", otherUser.ID)},
			{"PATCH", fmt.Sprintf("/auth/admin/users/%d/", otherUser.ID)},
			{"POST", fmt.Sprintf("/auth/admin/users/%d/logout-all/", otherUser.ID)},
		} {
			body := map[string]any{"name": "more", "expires_in_days": 1, "password": userPass,
				"old_password": userPass, "new_password1": "Another-pass-123", "new_password2": "Another-pass-123"}
			s.req(c.method, c.path, body, bearer(full)).expect(t, 401)
		}

		// Another user's id is not found; the owner's is revoked.
		s.req(http.MethodDelete, fmt.Sprintf("/auth/tokens/%v/", id), nil, bearer(other)).expect(t, 404)
		s.get("/api/x", bearer(tok)).expect(t, 200)
		s.req(http.MethodDelete, fmt.Sprintf("/auth/tokens/%v/", id), nil, bearer(access)).expect(t, 204)
		advance(t, 5*time.Second) // the cache window, were it another node
		s.get("/api/x", bearer(tok)).expect(t, 401)
		s.req(http.MethodDelete, fmt.Sprintf("/auth/tokens/%v/", id), nil, bearer(access)).expect(t, 404)

		// Expired: past its 30 days (the access token is long dead, the
		// personal token was made for this).
		advance(t, 30*24*time.Hour-time.Minute)
		s.get("/api/x", bearer(full)).expect(t, 200)
		advance(t, 2*time.Minute)
		s.get("/api/x", bearer(full)).expect(t, 401)
	})
}

func TestPersonalTokenRefusedWithOwnerDisabledE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", patBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		tok := s.makePAT(access, map[string]any{"name": "script", "expires_in_days": 1}).str("token")
		s.get("/api/x", bearer(tok)).expect(t, 200)
		st, err := caddyauth.ActiveStore()
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}
		advance(t, 5*time.Second)
		s.get("/api/x", bearer(tok)).expect(t, 401)
	})
}

// The reauth window: an old session sends its password. Making and
// revoking are audited.
func TestPersonalTokenReauthE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, audit := withAuditLog(t, caddyfile(store, "reauth_window 1m", patBody))
		s := startCaddy(t, cf)
		mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		n := auditDetails(audit())
		advance(t, 2*time.Minute)
		r := s.post("/auth/tokens/", map[string]any{"name": "n", "expires_in_days": 1}, bearer(access)).expect(t, 403)
		if r.str("code") != "reauthentication_required" {
			t.Fatalf("refusal: %s", r.raw)
		}
		s.post("/auth/tokens/", map[string]any{"name": "n", "expires_in_days": 1, "password": "wrong"}, bearer(access)).expect(t, 400)
		id := s.makePAT(access, map[string]any{"name": "n", "expires_in_days": 1, "password": userPass}).body["id"]
		n = expectAudit(t, audit, n, "made with the password", "password_check_failed/reauthenticate", "token_created")
		s.req(http.MethodDelete, fmt.Sprintf("/auth/tokens/%v/", id), nil, bearer(access)).expect(t, 204)
		expectAudit(t, audit, n, "revoked", "token_revoked")
	})
}

// Many clients use a token while its owner revokes it: every answer is
// 200 or 401 (none fails otherwise), and after the cache window every
// use is refused.
func TestPersonalTokenRevokeDuringUseE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", patBody))
		mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		r := s.makePAT(access, map[string]any{"name": "busy", "expires_in_days": 1})
		tok, id := r.str("token"), r.body["id"]
		var wg sync.WaitGroup
		var odd atomic.Value
		var refused atomic.Int64
		stop := make(chan struct{})
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := s.try(http.MethodGet, "/api/x", nil, bearer(tok))
					switch {
					case err != nil:
						odd.Store(err.Error())
					case r.status == 401:
						refused.Add(1)
					case r.status != 200:
						odd.Store(fmt.Sprintf("status %d: %s", r.status, r.raw))
					}
				}
			}()
		}
		time.Sleep(100 * time.Millisecond)
		s.req(http.MethodDelete, fmt.Sprintf("/auth/tokens/%v/", id), nil, bearer(access)).expect(t, 204)
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		if o := odd.Load(); o != nil {
			t.Fatalf("a use failed otherwise than 200 or 401: %v", o)
		}
		if refused.Load() == 0 {
			t.Fatal("no use was refused after the revocation")
		}
		advance(t, 5*time.Second)
		for range 10 {
			s.get("/api/x", bearer(tok)).expect(t, 401)
		}
	})
}
