// Package social speaks to the identity providers of social login: any
// OpenID Connect provider by its issuer (discovery, JWKS, the code flow
// with PKCE and a nonce, ID tokens checked fully), Sign in with Apple as
// one of them with a client secret it signs itself (apple.go), and
// GitHub, which speaks plain OAuth 2.0: the code flow with PKCE, then its
// REST API for the user and their addresses, and access tokens proven to
// be issued to our app (github.go). OIDC and GitHub have the same
// AuthCodeURL and Exchange, so one interface of the caller serves both;
// only GitHub can verify a bare access token. The package makes the
// outgoing HTTP calls and judges what comes back; it knows nothing of
// accounts, of the endpoints that use it, or of Caddy.
package social

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Identity is who a provider says signed in: its stable subject, and the
// address it vouches for or not.
type Identity struct {
	Provider      string
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
}

// Errors of a sign-in with a provider.
var (
	// ErrUnavailable: the provider could not be reached, answered
	// nonsense (discovery, keys, token endpoint), or refused our client
	// credentials; its flows fail, others do not.
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrInvalidToken: the credential did not verify (signature, issuer,
	// expiry, nonce, a refused code or verifier).
	ErrInvalidToken = errors.New("invalid social token")
	// ErrAudience: the ID token or access token was issued to another
	// client.
	ErrAudience = errors.New("social token for another client")
)

// signingAlgs are the ID token algorithms accepted: asymmetric ones only,
// so neither `none` nor a token signed with the client secret (HS256)
// passes.
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// OIDCConfig is one OpenID Connect provider.
type OIDCConfig struct {
	ID           string // the provider's id in paths and rows, e.g. "google"
	Issuer       string // https, or http on a loopback address (tests)
	ClientID     string
	ClientSecret string
	// ClientSecretFunc, instead of ClientSecret, gives the secret of each
	// token request: Apple's is a JWT signed with our key (AppleSecret).
	ClientSecretFunc func() (string, error)
	Scopes           []string // default: openid email profile
	// FormPost asks the provider to send the browser back with a POST of
	// the code and state (response_mode=form_post) rather than a query
	// string: Apple requires it when the scopes ask for the name or the
	// address.
	FormPost bool
	// HTTPClient makes the calls to the provider; nil means one with a 10 s
	// timeout.
	HTTPClient *http.Client
	// Now is the clock ID tokens are checked against; nil means the
	// system clock.
	Now func() time.Time
}

// OIDC is an OpenID Connect provider. Its discovery document is fetched
// on first use and kept; a failed fetch is retried by the next use, so a
// provider that is down never stops a start. Its keys are fetched when a
// token names a key id not seen yet.
type OIDC struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
}

// NewOIDC checks cfg. The issuer must be https, but for a loopback
// address.
func NewOIDC(cfg OIDCConfig) (*OIDC, error) {
	if cfg.ID == "" || cfg.ClientID == "" {
		return nil, errors.New("social: a provider needs an id and a client_id")
	}
	if err := CheckIssuer(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("social %s: %w", cfg.ID, err)
	}
	if cfg.ClientSecret != "" && cfg.ClientSecretFunc != nil {
		return nil, fmt.Errorf("social %s: a client secret and a client secret function both given", cfg.ID)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &OIDC{cfg: cfg}, nil
}

// CheckIssuer accepts an absolute https URL, or an http one whose host is
// a loopback address.
func CheckIssuer(issuer string) error {
	return checkURL("issuer", issuer)
}

// checkURL is CheckIssuer for any base URL of a provider, named what in
// its errors.
func checkURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s %q is not an absolute URL", what, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			return nil
		}
	}
	return fmt.Errorf("%s %q must be https (plain http only on a loopback address)", what, raw)
}

// discover returns the provider's discovered endpoints and its ID token
// verifier, fetching the discovery document on first use.
func (p *OIDC) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, p.verifier, nil
	}
	ctx = oidc.ClientContext(ctx, p.cfg.HTTPClient)
	prov, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s discovery: %v", ErrUnavailable, p.cfg.ID, err)
	}
	// The key set outlives this call: its fetches use a context of their
	// own, with the provider's HTTP client.
	keysCtx := oidc.ClientContext(context.Background(), p.cfg.HTTPClient)
	p.verifier = prov.VerifierContext(keysCtx, &oidc.Config{
		// The audience is checked below, to tell it from other failures.
		SkipClientIDCheck:    true,
		SupportedSigningAlgs: signingAlgs,
		Now:                  p.cfg.Now,
	})
	p.provider = prov
	return p.provider, p.verifier, nil
}

// oauth is the OAuth 2.0 side of the provider, without the client
// secret: only the token request needs it (clientSecret). The secret goes
// in the request body when the provider takes it there (Apple takes it
// nowhere else); otherwise the library finds out, trying the header first.
func (p *OIDC) oauth(prov *oidc.Provider, redirect string) *oauth2.Config {
	endpoint := prov.Endpoint()
	var d struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if prov.Claims(&d) == nil && slices.Contains(d.AuthMethods, "client_secret_post") {
		endpoint.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:    p.cfg.ClientID,
		Endpoint:    endpoint,
		RedirectURL: redirect,
		Scopes:      p.cfg.Scopes,
	}
}

// clientSecret is the configured secret, or a fresh one from
// ClientSecretFunc.
func (p *OIDC) clientSecret() (string, error) {
	if p.cfg.ClientSecretFunc == nil {
		return p.cfg.ClientSecret, nil
	}
	secret, err := p.cfg.ClientSecretFunc()
	if err != nil {
		return "", fmt.Errorf("%w: %s client secret: %v", ErrUnavailable, p.cfg.ID, err)
	}
	return secret, nil
}

// Attempt is what a browser's sign-in keeps between the redirect to the
// provider and its return: the state naming the attempt, the nonce the ID
// token must carry, and the PKCE verifier (the caller draws them).
type Attempt struct {
	State, Nonce, Verifier string
}

// Challenge is the PKCE S256 challenge of a verifier.
func Challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthCodeURL is where a browser is sent to sign in with the provider and
// come back to redirect with a code: the attempt's state, nonce and PKCE
// challenge (S256) go with it, and response_mode=form_post with FormPost.
func (p *OIDC) AuthCodeURL(ctx context.Context, redirect string, a Attempt) (string, error) {
	prov, _, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(a.Nonce),
		oauth2.SetAuthURLParam("code_challenge", Challenge(a.Verifier)),
		oauth2.SetAuthURLParam("code_challenge_method", "S256")}
	if p.cfg.FormPost {
		opts = append(opts, oauth2.SetAuthURLParam("response_mode", "form_post"))
	}
	return p.oauth(prov, redirect).AuthCodeURL(a.State, opts...), nil
}

// Exchange redeems a code the provider sent back to redirect, with the
// PKCE verifier (may be "" for a client that used none) and the nonce the
// ID token must carry ("" for a code obtained without one), and returns
// the verified identity.
func (p *OIDC) Exchange(ctx context.Context, redirect, code, verifier, nonce string) (Identity, error) {
	prov, _, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	conf := p.oauth(prov, redirect)
	if conf.ClientSecret, err = p.clientSecret(); err != nil {
		return Identity{}, err
	}
	tok, err := conf.Exchange(oidc.ClientContext(ctx, p.cfg.HTTPClient), code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_client" {
			return Identity{}, fmt.Errorf("%w: %s refused our client_id or client_secret: %v", ErrUnavailable, p.cfg.ID, err)
		}
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return Identity{}, fmt.Errorf("%w: the provider refused the code: %v", ErrInvalidToken, err)
		}
		return Identity{}, fmt.Errorf("%w: %s token endpoint: %v", ErrUnavailable, p.cfg.ID, err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, fmt.Errorf("%w: the token answer has no id_token", ErrInvalidToken)
	}
	return p.VerifyIDToken(ctx, raw, nonce)
}

// VerifyIDToken checks an ID token: the provider's published key (an
// asymmetric algorithm), `iss`, `exp`, `aud` naming our client id (and
// `azp` when there are several audiences), and `nonce` when one is
// expected.
func (p *OIDC) VerifyIDToken(ctx context.Context, raw, nonce string) (Identity, error) {
	_, verifier, err := p.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := verifier.Verify(oidc.ClientContext(ctx, p.cfg.HTTPClient), raw)
	if err != nil {
		if strings.Contains(err.Error(), "fetching keys") {
			return Identity{}, fmt.Errorf("%w: %s keys: %v", ErrUnavailable, p.cfg.ID, err)
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if !slices.Contains(tok.Audience, p.cfg.ClientID) {
		return Identity{}, ErrAudience
	}
	var c struct {
		AZP           string `json:"azp"`
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"` // a bool, or "true" from some providers
		Name          string `json:"name"`
	}
	if err := tok.Claims(&c); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	if len(tok.Audience) > 1 && c.AZP != p.cfg.ClientID {
		return Identity{}, ErrAudience
	}
	if nonce != "" && tok.Nonce != nonce {
		return Identity{}, fmt.Errorf("%w: the nonce does not match", ErrInvalidToken)
	}
	if tok.Subject == "" {
		return Identity{}, fmt.Errorf("%w: no subject", ErrInvalidToken)
	}
	verified := c.EmailVerified == true || c.EmailVerified == "true"
	return Identity{Provider: p.cfg.ID, Subject: tok.Subject, Email: c.Email, EmailVerified: verified, Name: c.Name}, nil
}
