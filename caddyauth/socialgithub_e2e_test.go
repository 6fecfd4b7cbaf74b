package caddyauth_test

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/githubtest"
)

// GitHub is not OpenID Connect: its sign-ins go through OAuth 2.0 and its
// API, here against a GitHub-style server on loopback speaking the same
// protocol (authorize with PKCE, token, /user, /user/emails and the
// token check with the app's credentials).
func TestSocialGitHubE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		gh := githubtest.New("gh-client", "gh-test-secret")
		t.Cleanup(gh.Close)
		gh.AddUser(githubtest.User{ID: 4242, Login: "ada", Name: "Ada Lovelace",
			Emails: []githubtest.Email{{Email: "ada@example.com", Primary: true, Verified: true}}})
		gh.AddUser(githubtest.User{ID: 77, Login: "eve", Name: "Eve",
			Emails: []githubtest.Email{{Email: "eve@example.com", Primary: true, Verified: false}}})
		callback := "http://127.0.0.1:9/app/callback"
		opts := fmt.Sprintf(`social github {
			client_id gh-client
			client_secret gh-test-secret
			web_url %[1]s
			api_url %[1]s
		}
		social_callback_urls %[2]s`, gh.URL(), callback)
		s := startCaddy(t, caddyfile(store, opts, defaultBody))

		// The token flow: an access token of our app signs in and creates
		// the account; the same identity comes back to it.
		r := s.post("/auth/social/github/token/", map[string]string{"access_token": gh.MintToken("gh-client", "ada", ""), "client_id": "gh-client"}).expect(t, http.StatusOK)
		c := claims(t, r.str("access"))
		user := s.get("/auth/user/", bearer(r.str("access"))).expect(t, http.StatusOK)
		if user.str("email") != "ada@example.com" || user.str("first_name") != "Ada" || user.str("last_name") != "Lovelace" {
			t.Fatalf("the new account: %s", user.raw)
		}
		links := s.get("/auth/social/accounts/", bearer(r.str("access"))).expect(t, http.StatusOK)
		if want := `"uid":"4242"`; !strings.Contains(string(links.raw), want) || !strings.Contains(string(links.raw), `"provider":"github"`) {
			t.Fatalf("links %s, want %s", links.raw, want)
		}

		// A token another app obtained for the same person is not ours.
		s.post("/auth/social/github/token/", map[string]string{"access_token": gh.MintToken("someone-else", "ada", ""), "client_id": "gh-client"}).
			expect(t, http.StatusUnauthorized).wantCode(t, "client_id_mismatch")
		s.post("/auth/social/github/token/", map[string]string{"access_token": "gho_made_up", "client_id": "gh-client"}).
			expect(t, http.StatusUnauthorized).wantCode(t, "invalid_social_token")
		// GitHub issues no ID token.
		s.post("/auth/social/github/token/", map[string]string{"id_token": "a.b.c", "client_id": "gh-client"}).
			expect(t, http.StatusBadRequest).wantCode(t, "flow_not_supported")
		// An address GitHub has not verified is no proof.
		s.post("/auth/social/github/token/", map[string]string{"access_token": gh.MintToken("gh-client", "eve", ""), "client_id": "gh-client"}).
			expect(t, http.StatusBadRequest).wantCode(t, "provider_email_unverified")

		// The code flow with PKCE, for a redirect URI on the list.
		verifier := "a-verifier-of-at-least-forty-three-characters-0123456789"
		sum := sha256.Sum256([]byte(verifier))
		code := githubCode(t, gh, callback, base64.RawURLEncoding.EncodeToString(sum[:]))
		r = s.post("/auth/social/github/code/", map[string]string{"code": code, "callback_url": callback, "code_verifier": verifier, "client_id": "gh-client"}).expect(t, http.StatusOK)
		if got := claims(t, r.str("access")); got["user_id"] != c["user_id"] {
			t.Fatalf("the code flow signed in %v, the token flow %v", got["user_id"], c["user_id"])
		}
		// A code works once, and only with its verifier.
		s.post("/auth/social/github/code/", map[string]string{"code": code, "callback_url": callback, "code_verifier": verifier, "client_id": "gh-client"}).
			expect(t, http.StatusUnauthorized).wantCode(t, "invalid_social_token")
		code = githubCode(t, gh, callback, base64.RawURLEncoding.EncodeToString(sum[:]))
		s.post("/auth/social/github/code/", map[string]string{"code": code, "callback_url": callback, "code_verifier": verifier + "x", "client_id": "gh-client"}).
			expect(t, http.StatusUnauthorized).wantCode(t, "invalid_social_token")
		s.post("/auth/social/github/code/", map[string]string{"code": code, "callback_url": "http://127.0.0.1:9/elsewhere", "code_verifier": verifier, "client_id": "gh-client"}).
			expect(t, http.StatusBadRequest).wantCode(t, "callback_url_not_allowed")

		// GitHub down: its flows answer 503, the rest of the site works.
		gh.Close()
		s.post("/auth/social/github/token/", map[string]string{"access_token": "gho_any", "client_id": "gh-client"}).expect(t, http.StatusServiceUnavailable)
		s.get("/auth/social/providers/").expect(t, http.StatusOK)
	})
}

// githubCode runs the browser's leg at the GitHub-style server for ada:
// authorize with the PKCE challenge, approved at once, and returns the
// code it redirects back with.
func githubCode(t *testing.T, gh *githubtest.Server, redirect, challenge string) string {
	t.Helper()
	q := url.Values{"client_id": {"gh-client"}, "redirect_uri": {redirect}, "state": {"s1"}, "scope": {"read:user user:email"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "login": {"ada"}}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(gh.URL() + "/login/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("authorize answered %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// wantCode fails unless the body's code is code.
func (r reply) wantCode(t *testing.T, code string) reply {
	t.Helper()
	if got := r.str("code"); got != code {
		t.Fatalf("code %q, want %q: %s", got, code, r.raw)
	}
	return r
}

// The command line lists an account's links and removes one, never the
// last way in; list-users shows the providers.
func TestSocialCommandsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		gh := githubtest.New("gh-client", "gh-test-secret")
		t.Cleanup(gh.Close)
		gh.AddUser(githubtest.User{ID: 9, Login: "ada", Name: "Ada",
			Emails: []githubtest.Email{{Email: "ada@example.com", Primary: true, Verified: true}}})
		opts := fmt.Sprintf(`social github {
			client_id gh-client
			client_secret gh-test-secret
			web_url %[1]s
			api_url %[1]s
		}
		social work github {
			client_id gh-client
			client_secret gh-test-secret
			web_url %[1]s
			api_url %[1]s
		}`, gh.URL())
		cf := caddyfile(store, opts, defaultBody)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := []string{"--config", path, "--adapter", "caddyfile"}
		s := startCaddy(t, cf)
		for _, p := range []string{"github", "work"} {
			s.post("/auth/social/"+p+"/token/", map[string]string{"access_token": gh.MintToken("gh-client", "ada", ""), "client_id": "gh-client"}).expect(t, http.StatusOK)
		}
		out, err := runCLI(t, "", append([]string{"list-users"}, cfg...)...)
		if err != nil || !strings.Contains(out, "PROVIDERS") || !strings.Contains(out, "github,work") {
			t.Fatalf("list-users: %v\n%s", err, out)
		}
		out, err = runCLI(t, "", append([]string{"list-social", "--email", "ada@example.com"}, cfg...)...)
		if err != nil || !strings.Contains(out, "github") || !strings.Contains(out, "work") || strings.Count(out, "\t9\t")+strings.Count(out, " 9 ") == 0 {
			t.Fatalf("list-social: %v\n%s", err, out)
		}
		// A second GitHub identity vouching for the same address joins the
		// account: two links to one provider need the subject to unlink.
		gh.AddUser(githubtest.User{ID: 10, Login: "ada-work", Name: "Ada",
			Emails: []githubtest.Email{{Email: "ada@example.com", Primary: true, Verified: true}}})
		s.post("/auth/social/github/token/", map[string]string{"access_token": gh.MintToken("gh-client", "ada-work", ""), "client_id": "gh-client"}).expect(t, http.StatusOK)
		if _, err := runCLI(t, "", append([]string{"unlink", "--email", "ada@example.com", "--provider", "github"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "--uid") {
			t.Fatalf("unlinking one of two links to github: %v", err)
		}
		if out, err := runCLI(t, "", append([]string{"unlink", "--email", "ada@example.com", "--provider", "github", "--uid", "10"}, cfg...)...); err != nil || !strings.Contains(out, "removed") {
			t.Fatalf("unlink --uid: %v\n%s", err, out)
		}
		if out, err := runCLI(t, "", append([]string{"unlink", "--email", "ada@example.com", "--provider", "work"}, cfg...)...); err != nil || !strings.Contains(out, "removed") {
			t.Fatalf("unlink: %v\n%s", err, out)
		}
		// The account has no password: its last link stays.
		if _, err := runCLI(t, "", append([]string{"unlink", "--email", "ada@example.com", "--provider", "github"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "last way to sign in") {
			t.Fatalf("unlinking the last way in: %v", err)
		}
		if _, err := runCLI(t, "", append([]string{"unlink", "--email", "ada@example.com", "--provider", "work"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "not linked to work") {
			t.Fatalf("unlinking twice: %v", err)
		}
		s.post("/auth/social/github/token/", map[string]string{"access_token": gh.MintToken("gh-client", "ada", ""), "client_id": "gh-client"}).expect(t, http.StatusOK)
	})
}
