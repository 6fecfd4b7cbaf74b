package social

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/githubtest"
)

// The GitHub of these tests is githubtest, a real OAuth 2.0 server on
// loopback answering like GitHub's web host and API host.

const ghClient, ghSecret = "Iv1.test-app", "test-app-secret"

var ada = githubtest.User{ID: 42, Login: "ada", Name: "Ada L", Emails: []githubtest.Email{
	{Email: "ada@old.example.com", Verified: true},
	{Email: "ada@example.com", Primary: true, Verified: true},
}}

func startGitHub(t *testing.T) *githubtest.Server {
	t.Helper()
	srv := githubtest.New(ghClient, ghSecret)
	t.Cleanup(srv.Close)
	srv.AddUser(ada)
	return srv
}

func ghClientFor(t *testing.T, srv *githubtest.Server, secret string) *GitHub {
	t.Helper()
	g, err := NewGitHub(GitHubConfig{ID: "github", ClientID: ghClient, ClientSecret: secret, WebURL: srv.URL(), APIURL: srv.URL() + "/"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// ghAuthorize runs the browser's leg for login: it follows the
// authorization URL to GitHub, approving without the page, and returns
// the code of the redirect back.
func ghAuthorize(t *testing.T, g *GitHub, a Attempt, login string) (code string) {
	t.Helper()
	u, err := g.AuthCodeURL(context.Background(), redirect, a)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(u)
	v := q.Query()
	if v.Get("code_challenge") != Challenge(a.Verifier) || v.Get("code_challenge_method") != "S256" || v.Get("state") != a.State ||
		v.Get("scope") != "read:user user:email" || v.Get("redirect_uri") != redirect || v.Has("nonce") {
		t.Fatalf("authorization URL %s", u)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(u + "&login=" + url.QueryEscape(login))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), redirect) {
		t.Fatalf("authorize: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != a.State {
		t.Fatalf("state %q came back as %q", a.State, got)
	}
	return loc.Query().Get("code")
}

func TestGitHubCodeFlow(t *testing.T) {
	srv := startGitHub(t)
	g := ghClientFor(t, srv, ghSecret)
	ctx := context.Background()
	a := attempt(t)
	code := ghAuthorize(t, g, a, "ada")
	// The nonce is GitHub's to ignore.
	id, err := g.Exchange(ctx, redirect, code, a.Verifier, "ignored")
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{Provider: "github", Subject: "42", Email: "ada@example.com", EmailVerified: true, Name: "Ada L"}) {
		t.Fatalf("identity %+v", id)
	}
	if _, err := g.Exchange(ctx, redirect, code, a.Verifier, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a replayed code: %v", err)
	}
}

func TestGitHubUnverifiedPrimaryAddress(t *testing.T) {
	srv := startGitHub(t)
	srv.AddUser(githubtest.User{ID: 7, Login: "eve", Emails: []githubtest.Email{
		{Email: "eve@verified.example.com", Verified: true},
		{Email: "eve@example.com", Primary: true},
	}})
	g := ghClientFor(t, srv, ghSecret)
	a := attempt(t)
	id, err := g.Exchange(context.Background(), redirect, ghAuthorize(t, g, a, "eve"), a.Verifier, "")
	if err != nil {
		t.Fatal(err)
	}
	// The primary address, not vouched for; a user without a name is
	// named by their login.
	if id != (Identity{Provider: "github", Subject: "7", Email: "eve@example.com", Name: "eve"}) {
		t.Fatalf("identity %+v", id)
	}
}

func TestGitHubCodeFlowRefusals(t *testing.T) {
	srv := startGitHub(t)
	g := ghClientFor(t, srv, ghSecret)
	ctx := context.Background()
	// Each case redeems a fresh code with the redirect and verifier it
	// picks from the right ones.
	for name, pick := range map[string]func(a Attempt) (redirect, verifier string){
		"wrong PKCE verifier":   func(Attempt) (string, string) { return redirect, attempt(t).Verifier },
		"missing PKCE verifier": func(Attempt) (string, string) { return redirect, "" },
		"wrong redirect_uri":    func(a Attempt) (string, string) { return "https://evil.example.com/callback/", a.Verifier },
	} {
		t.Run(name, func(t *testing.T) {
			a := attempt(t)
			code := ghAuthorize(t, g, a, "ada")
			r, v := pick(a)
			if _, err := g.Exchange(ctx, r, code, v, ""); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("got %v, want ErrInvalidToken", err)
			}
		})
	}
	t.Run("unknown code", func(t *testing.T) {
		if _, err := g.Exchange(ctx, redirect, "not-a-code", attempt(t).Verifier, ""); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "bad_verification_code") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		a := attempt(t)
		code := ghAuthorize(t, g, a, "ada")
		_, err := ghClientFor(t, srv, "not-the-secret").Exchange(ctx, redirect, code, a.Verifier, "")
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "client_secret") {
			t.Fatalf("a misconfigured secret: %v, want ErrUnavailable naming the secret", err)
		}
	})
}

func TestGitHubAccessToken(t *testing.T) {
	srv := startGitHub(t)
	g := ghClientFor(t, srv, ghSecret)
	ctx := context.Background()
	id, err := g.VerifyAccessToken(ctx, srv.MintToken(ghClient, "ada", ""))
	if err != nil || id != (Identity{Provider: "github", Subject: "42", Email: "ada@example.com", EmailVerified: true, Name: "Ada L"}) {
		t.Fatalf("a token of our app: %+v %v", id, err)
	}
	for name, c := range map[string]struct {
		token string
		want  error
	}{
		"a token of another app":          {srv.MintToken("Iv1.other-app", "ada", ""), ErrAudience},
		"an unknown token":                {"gho_0000000000000000000000000000000000000000", ErrInvalidToken},
		"no token":                        {"", ErrInvalidToken},
		"a token that cannot read emails": {srv.MintToken(ghClient, "ada", "read:user"), ErrInvalidToken},
	} {
		if _, err := g.VerifyAccessToken(ctx, c.token); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	if _, err := ghClientFor(t, srv, "not-the-secret").VerifyAccessToken(ctx, srv.MintToken(ghClient, "ada", "")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("checking with a wrong secret: %v, want ErrUnavailable", err)
	}
}

func TestGitHubDownIsUnavailable(t *testing.T) {
	srv := startGitHub(t)
	g := ghClientFor(t, srv, ghSecret)
	a := attempt(t)
	code := ghAuthorize(t, g, a, "ada")
	token := srv.MintToken(ghClient, "ada", "")
	srv.Close()
	ctx := context.Background()
	if _, err := g.Exchange(ctx, redirect, code, a.Verifier, ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("exchange: %v, want ErrUnavailable", err)
	}
	if _, err := g.VerifyAccessToken(ctx, token); !errors.Is(err, ErrUnavailable) {
		t.Errorf("access token: %v, want ErrUnavailable", err)
	}
}

// TestGitHubFailingIsUnavailable: a GitHub that answers with a server
// error or rate limiting (429, or 403 with no requests left) fails the flow as unavailable, not as the
// user's bad token.
func TestGitHubFailingIsUnavailable(t *testing.T) {
	for _, status := range []int{http.StatusBadGateway, http.StatusTooManyRequests, http.StatusForbidden} {
		failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.WriteHeader(status)
		}))
		g, err := NewGitHub(GitHubConfig{ID: "github", ClientID: ghClient, ClientSecret: ghSecret, WebURL: failing.URL, APIURL: failing.URL})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := g.Exchange(ctx, redirect, "code", "verifier", ""); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%d, exchange: %v", status, err)
		}
		if _, err := g.VerifyAccessToken(ctx, "gho_x"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%d, access token: %v", status, err)
		}
		failing.Close()
	}
}

func TestNewGitHub(t *testing.T) {
	g, err := NewGitHub(GitHubConfig{ID: "github", ClientID: "c", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := g.AuthCodeURL(context.Background(), redirect, attempt(t))
	if !strings.HasPrefix(u, "https://github.com/login/oauth/authorize?") {
		t.Errorf("default web host: %s", u)
	}
	for name, cfg := range map[string]GitHubConfig{
		"no secret":          {ID: "github", ClientID: "c"},
		"no client_id":       {ID: "github", ClientSecret: "s"},
		"plain http web URL": {ID: "github", ClientID: "c", ClientSecret: "s", WebURL: "http://github.example.com"},
		"plain http API URL": {ID: "github", ClientID: "c", ClientSecret: "s", APIURL: "http://api.github.example.com"},
	} {
		if _, err := NewGitHub(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
