package githubtest

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// The client of social login is tested against this server in
// caddyauth/social; these tests hold the server to what that client and
// the browser tests rely on: the page and its form, the answers a client
// without Accept: application/json gets, and the refusals.

const callback = "https://auth.example.com/auth/social/github/callback/"

var noFollow = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func start(t *testing.T) *Server {
	t.Helper()
	s := New("app", "secret")
	t.Cleanup(s.Close)
	s.AddUser(User{ID: 1, Login: "ada", Name: "Ada", Emails: []Email{{Email: "ada@example.com", Primary: true, Verified: true}}})
	s.AddUser(User{ID: 2, Login: "bob"})
	return s
}

func authorizeURL(s *Server, extra url.Values) string {
	q := url.Values{"client_id": {"app"}, "redirect_uri": {callback}, "scope": {"read:user user:email"}, "state": {"st"},
		"code_challenge": {challenge("verifier")}, "code_challenge_method": {"S256"}}
	for k, v := range extra {
		q[k] = v
	}
	return s.URL() + "/login/oauth/authorize?" + q.Encode()
}

// redirected sends req and returns the query of the redirect back to
// the client.
func redirected(t *testing.T, req *http.Request) url.Values {
	t.Helper()
	res, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), callback) {
		t.Fatalf("%d %q, want a redirect back", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query()
}

// submit posts the page's form as a browser would, with the account
// login chosen and the button action clicked.
func submit(t *testing.T, s *Server, login, action string) url.Values {
	t.Helper()
	res, err := http.Get(authorizeURL(s, nil))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	page := string(body)
	for _, want := range []string{`id="sign-in"`, `<option value="ada">`, `<option value="bob">`, `method="post"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %s:\n%s", want, page)
		}
	}
	form := url.Values{"login": {login}, "action": {action}}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/login/oauth/authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return redirected(t, req)
}

// redeem posts to the token endpoint, asking for JSON.
func redeem(t *testing.T, s *Server, form url.Values) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]string{}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("token endpoint: %d %v", res.StatusCode, err)
	}
	return out
}

func get(u string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return req
}

func tokenForm(code, verifier string) url.Values {
	return url.Values{"client_id": {"app"}, "client_secret": {"secret"}, "code": {code}, "redirect_uri": {callback}, "code_verifier": {verifier}}
}

func TestPageSignsIn(t *testing.T) {
	s := start(t)
	q := submit(t, s, "bob", "approve")
	if q.Get("state") != "st" || q.Get("code") == "" {
		t.Fatalf("back with %v", q)
	}
	tok := redeem(t, s, tokenForm(q.Get("code"), "verifier"))
	if tok["access_token"] == "" || tok["scope"] != "read:user,user:email" {
		t.Fatalf("token answer %v", tok)
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/user", nil)
	req.Header.Set("Authorization", "token "+tok["access_token"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var u map[string]any
	if err := json.NewDecoder(res.Body).Decode(&u); err != nil || u["login"] != "bob" || u["id"] != float64(2) || u["name"] != nil {
		t.Fatalf("/user: %v %v", u, err)
	}
}

func TestPageCancels(t *testing.T) {
	q := submit(t, start(t), "ada", "deny")
	if q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Has("code") {
		t.Fatalf("back with %v", q)
	}
}

func TestAutoApprove(t *testing.T) {
	s := start(t)
	s.AutoApprove("ada")
	if q := redirected(t, get(authorizeURL(s, nil))); q.Get("code") == "" {
		t.Fatalf("back with %v", q)
	}
	if q := redirected(t, get(authorizeURL(s, url.Values{"login": {"bob"}}))); q.Get("code") == "" {
		t.Fatalf("back with %v", q)
	}
	s.AutoApprove("")
	res, err := noFollow.Get(authorizeURL(s, nil))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("the page again: %d", res.StatusCode)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	s := start(t)
	for name, extra := range map[string]url.Values{
		"unknown client":     {"client_id": {"other"}},
		"no redirect_uri":    {"redirect_uri": {""}},
		"plain PKCE":         {"code_challenge_method": {"plain"}},
		"an unknown account": {"login": {"mallory"}},
	} {
		res, err := noFollow.Get(authorizeURL(s, extra))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d", name, res.StatusCode)
		}
	}
}

func TestTokenEndpointRefusals(t *testing.T) {
	s := start(t)
	code := func(extra url.Values) string {
		return redirected(t, get(authorizeURL(s, extra))).Get("code")
	}
	noPKCE := url.Values{"login": {"ada"}, "code_challenge": {""}, "code_challenge_method": {""}}
	// Each case changes the right request for a fresh code of ada's.
	for name, c := range map[string]struct {
		change func(f url.Values)
		want   string
	}{
		"wrong secret":         {func(f url.Values) { f.Set("client_secret", "x") }, "incorrect_client_credentials"},
		"wrong verifier":       {func(f url.Values) { f.Set("code_verifier", "other") }, "bad_verification_code"},
		"no verifier":          {func(f url.Values) { f.Del("code_verifier") }, "bad_verification_code"},
		"verifier, no PKCE":    {func(f url.Values) { f.Set("code", code(noPKCE)) }, "bad_verification_code"},
		"wrong redirect_uri":   {func(f url.Values) { f.Set("redirect_uri", callback+"x") }, "redirect_uri_mismatch"},
		"missing redirect_uri": {func(f url.Values) { f.Del("redirect_uri") }, "redirect_uri_mismatch"},
		"unknown code":         {func(f url.Values) { f.Set("code", "nope") }, "bad_verification_code"},
	} {
		f := tokenForm(code(url.Values{"login": {"ada"}}), "verifier")
		c.change(f)
		if got := redeem(t, s, f); got["error"] != c.want || got["access_token"] != "" {
			t.Errorf("%s: %v, want error %s", name, got, c.want)
		}
	}
	// A code without PKCE redeems without a verifier, once.
	c := code(noPKCE)
	f := tokenForm(c, "")
	f.Del("code_verifier")
	if got := redeem(t, s, f); got["access_token"] == "" {
		t.Fatalf("a code without PKCE: %v", got)
	}
	if got := redeem(t, s, f); got["error"] != "bad_verification_code" {
		t.Fatalf("the code again: %v", got)
	}
}

// TestTokenEndpointFormEncoded: without Accept: application/json the
// answer is form-encoded, as GitHub's.
func TestTokenEndpointFormEncoded(t *testing.T) {
	s := start(t)
	c := redirected(t, get(authorizeURL(s, url.Values{"login": {"ada"}}))).Get("code")
	res, err := http.PostForm(s.URL()+"/login/oauth/access_token", tokenForm(c, "verifier"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	v, err := url.ParseQuery(string(body))
	if err != nil || v.Get("access_token") == "" || v.Get("token_type") != "bearer" {
		t.Fatalf("%q %v", body, err)
	}
}

func TestCheckToken(t *testing.T) {
	s := start(t)
	check := func(user, pass, token string) int {
		t.Helper()
		body, _ := json.Marshal(map[string]string{"access_token": token})
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/applications/app/token", strings.NewReader(string(body)))
		req.SetBasicAuth(user, pass)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	ours := s.MintToken("app", "ada", "")
	for name, c := range map[string]struct {
		user, pass, token string
		want              int
	}{
		"our token":            {"app", "secret", ours, http.StatusOK},
		"another app's token":  {"app", "secret", s.MintToken("other", "ada", ""), http.StatusNotFound},
		"an unknown token":     {"app", "secret", "gho_nope", http.StatusNotFound},
		"no token":             {"app", "secret", "", http.StatusUnprocessableEntity},
		"wrong secret":         {"app", "x", ours, http.StatusUnauthorized},
		"another app's client": {"other", "secret", ours, http.StatusUnauthorized},
	} {
		if got := check(c.user, c.pass, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
}
