package social

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// The provider of these tests is a real OpenID Connect server on
// loopback (mockoidc): discovery, JWKS, authorize with PKCE and a nonce,
// token and userinfo, over HTTP.

const redirect = "https://auth.example.com/auth/social/test/callback/"

func startProvider(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return m
}

func client(t *testing.T, m *mockoidc.MockOIDC, clientID string) *OIDC {
	t.Helper()
	p, err := NewOIDC(OIDCConfig{ID: "test", Issuer: m.Issuer(), ClientID: clientID, ClientSecret: m.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// authorize runs the browser's leg: it follows the authorization URL to
// the provider, which signs the queued user in and answers with a
// redirect carrying the code and the state.
func authorize(t *testing.T, p *OIDC, a Attempt) (code string) {
	t.Helper()
	u, err := p.AuthCodeURL(context.Background(), redirect, a)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := url.Parse(u)
	if q.Query().Get("code_challenge") != Challenge(a.Verifier) || q.Query().Get("code_challenge_method") != "S256" || q.Query().Get("nonce") != a.Nonce {
		t.Fatalf("authorization URL %s lacks PKCE or the nonce", u)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("authorize: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != a.State {
		t.Fatalf("state %q came back as %q", a.State, got)
	}
	return loc.Query().Get("code")
}

// attempt draws an attempt's secrets.
func attempt(t *testing.T) Attempt {
	t.Helper()
	var out [3]string
	for i := range out {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		out[i] = base64.RawURLEncoding.EncodeToString(b)
	}
	return Attempt{State: out[0], Nonce: out[1], Verifier: out[2]}
}

func TestCodeFlow(t *testing.T) {
	m := startProvider(t)
	m.QueueUser(&mockoidc.MockUser{Subject: "u-42", Email: "ada@example.com", EmailVerified: true})
	p := client(t, m, m.ClientID)
	a := attempt(t)
	code := authorize(t, p, a)
	id, err := p.Exchange(context.Background(), redirect, code, a.Verifier, a.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if id != (Identity{Provider: "test", Subject: "u-42", Email: "ada@example.com", EmailVerified: true}) {
		t.Fatalf("identity %+v", id)
	}
	// A code works once.
	if _, err := p.Exchange(context.Background(), redirect, code, a.Verifier, a.Nonce); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a replayed code: %v", err)
	}
}

func TestCodeFlowUnverifiedAddress(t *testing.T) {
	m := startProvider(t)
	m.QueueUser(&mockoidc.MockUser{Subject: "u-7", Email: "eve@example.com", EmailVerified: false})
	p := client(t, m, m.ClientID)
	a := attempt(t)
	id, err := p.Exchange(context.Background(), redirect, authorize(t, p, a), a.Verifier, a.Nonce)
	if err != nil || id.EmailVerified || id.Email != "eve@example.com" {
		t.Fatalf("identity %+v, %v: the provider does not vouch for the address", id, err)
	}
}

func TestCodeFlowRefusals(t *testing.T) {
	m := startProvider(t)
	p := client(t, m, m.ClientID)
	ctx := context.Background()
	t.Run("wrong PKCE verifier", func(t *testing.T) {
		a := attempt(t)
		if _, err := p.Exchange(ctx, redirect, authorize(t, p, a), attempt(t).Verifier, a.Nonce); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing PKCE verifier", func(t *testing.T) {
		a := attempt(t)
		if _, err := p.Exchange(ctx, redirect, authorize(t, p, a), "", a.Nonce); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		a := attempt(t)
		if _, err := p.Exchange(ctx, redirect, authorize(t, p, a), a.Verifier, attempt(t).Nonce); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		if _, err := p.Exchange(ctx, redirect, "not-a-code", attempt(t).Verifier, ""); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		wrong, err := NewOIDC(OIDCConfig{ID: "test", Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecret: "not-the-secret"})
		if err != nil {
			t.Fatal(err)
		}
		a := attempt(t)
		// A misconfiguration, not the user's bad code: unavailable.
		if _, err := wrong.Exchange(ctx, redirect, authorize(t, p, a), a.Verifier, a.Nonce); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
}

// idToken returns an ID token of the provider for its client, by a real
// code flow.
func idToken(t *testing.T, m *mockoidc.MockOIDC) (raw, nonce string) {
	t.Helper()
	p := client(t, m, m.ClientID)
	a := attempt(t)
	code := authorize(t, p, a)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {m.ClientID}, "client_secret": {m.ClientSecret}, "code_verifier": {a.Verifier}}
	res, err := http.PostForm(m.TokenEndpoint(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		IDToken string `json:"id_token"`
	}
	if err := jsonDecode(res, &body); err != nil || body.IDToken == "" {
		t.Fatalf("token endpoint: %d %v", res.StatusCode, err)
	}
	return body.IDToken, a.Nonce
}

func TestVerifyIDToken(t *testing.T) {
	m := startProvider(t)
	raw, nonce := idToken(t, m)
	ctx := context.Background()
	p := client(t, m, m.ClientID)
	if id, err := p.VerifyIDToken(ctx, raw, nonce); err != nil || id.Subject == "" {
		t.Fatalf("a good token: %+v %v", id, err)
	}
	if _, err := p.VerifyIDToken(ctx, raw, ""); err != nil {
		t.Fatalf("the token flow expects no nonce: %v", err)
	}
	if _, err := client(t, m, "another-client").VerifyIDToken(ctx, raw, ""); !errors.Is(err, ErrAudience) {
		t.Fatalf("a token for another client: %v", err)
	}
	late, err := NewOIDC(OIDCConfig{ID: "test", Issuer: m.Issuer(), ClientID: m.ClientID, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late.VerifyIDToken(ctx, raw, ""); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("an expired token: %v", err)
	}
}

// forged signs claims as an attacker would: with the provider's key but
// other claims, with no signature, with the client secret, or with a key
// the provider never published.
func TestVerifyIDTokenForgeries(t *testing.T) {
	m := startProvider(t)
	p := client(t, m, m.ClientID)
	ctx := context.Background()
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": m.Issuer(), "aud": m.ClientID, "sub": "u-1", "email": "ada@example.com",
			"email_verified": true, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(c jwt.MapClaims) string {
		tok, err := m.Keypair.SignJWT(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if id, err := p.VerifyIDToken(ctx, sign(claims(func(c jwt.MapClaims) { c["email_verified"] = "true" })), ""); err != nil || !id.EmailVerified {
		t.Fatalf("a provider's own token, email_verified as a string: %+v %v", id, err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	unknownKid := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil))
	unknownKid.Header["kid"] = "not-published"
	strangerKey, _ := unknownKid.SignedString(other)
	kid, _ := m.Keypair.KeyID()
	sameKid := jwt.NewWithClaims(jwt.SigningMethodRS256, claims(nil))
	sameKid.Header["kid"] = kid
	wrongKey, _ := sameKid.SignedString(other)
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil))
	hs.Header["kid"] = kid
	withSecret, _ := hs.SignedString([]byte(m.ClientSecret))
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	body := strings.Split(sign(claims(nil)), ".")[1]
	none := header + "." + body + "."

	for name, raw := range map[string]string{
		"wrong iss":                          sign(claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })),
		"expired":                            sign(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })),
		"no subject":                         sign(claims(func(c jwt.MapClaims) { delete(c, "sub") })),
		"alg none":                           none,
		"HS256 with the secret":              withSecret,
		"unknown kid":                        strangerKey,
		"the provider's kid but another key": wrongKey,
	} {
		if _, err := p.VerifyIDToken(ctx, raw, ""); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
	multi := sign(claims(func(c jwt.MapClaims) { c["aud"] = []string{m.ClientID, "someone-else"}; c["azp"] = "someone-else" }))
	if _, err := p.VerifyIDToken(ctx, multi, ""); !errors.Is(err, ErrAudience) {
		t.Errorf("a token authorised for another party: %v", err)
	}
}

func TestProviderDownIsUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/oidc"
	ln.Close()
	p, err := NewOIDC(OIDCConfig{ID: "down", Issuer: issuer, ClientID: "c"})
	if err != nil {
		t.Fatalf("a provider that is down must not fail the start: %v", err)
	}
	if _, err := p.AuthCodeURL(context.Background(), redirect, attempt(t)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if _, err := p.VerifyIDToken(context.Background(), "x.y.z", ""); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
}

func TestCheckIssuer(t *testing.T) {
	for _, ok := range []string{"https://accounts.google.com", "https://login.example.com/realms/staff", "http://127.0.0.1:9000/oidc", "http://[::1]:9000", "http://localhost:8080"} {
		if err := CheckIssuer(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "accounts.google.com", "http://login.example.com", "ftp://x", "https://u:p@login.example.com", "https://login.example.com/?x=1"} {
		if err := CheckIssuer(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := NewOIDC(OIDCConfig{ID: "x", Issuer: "https://login.example.com"}); err == nil {
		t.Error("a provider without client_id accepted")
	}
}

func jsonDecode(res *http.Response, v any) error {
	return json.NewDecoder(res.Body).Decode(v)
}
