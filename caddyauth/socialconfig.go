package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/social"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

// SocialProvider is one identity provider of social login (`social` in
// the global option). The OpenID Connect kinds are discovered from their
// issuer: `google`, `microsoft` (the tenant's issuer), `gitlab` and
// `oidc` (any issuer URL). Discovery and keys are fetched on first use,
// so a provider that is down never stops a start. The sign-in flows that
// use them are served under {prefix}/social/ (see README).
type SocialProvider struct {
	// The provider's id in paths, e.g. `google` or `company`: lower-case
	// letters, digits, `-` and `_`, but not `accounts` or `providers`.
	ID string `json:"id"`
	// google, microsoft, gitlab or oidc. Default: the id.
	Kind string `json:"kind,omitempty"`
	// The issuer URL (oidc only): https, or http on a loopback address.
	Issuer string `json:"issuer,omitempty"`
	// The Microsoft tenant (microsoft only): a tenant id or domain.
	// Required: a multi-tenant issuer cannot be checked.
	Tenant string `json:"tenant,omitempty"`
	// The client registered at the provider. Give the secret as a
	// placeholder such as `{env.GOOGLE_CLIENT_SECRET}`.
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	// The name shown on buttons. Default: the kind's, or the id.
	Name string `json:"name,omitempty"`
	// The scopes asked for. Default: openid email profile (apple: openid
	// name email; github: read:user user:email).
	Scopes []string `json:"scopes,omitempty"`
	// Apple only: the team id, the key id and the `.p8` private key (its
	// PEM text, e.g. `{file./run/secrets/apple.p8}`) that sign the client
	// secret; client_id is the Services ID.
	TeamID     string `json:"team_id,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	PrivateKey string `json:"private_key,omitempty"`
	// GitHub only: the web and API addresses of a GitHub Enterprise
	// Server (default https://github.com and https://api.github.com).
	WebURL string `json:"web_url,omitempty"`
	APIURL string `json:"api_url,omitempty"`
	// Whether a first sign-in may reach an existing account by the
	// address the provider vouches for, when that account's owner has
	// proven control of the mailbox (`link_by_email off` refuses it with
	// email_already_registered). Default: on.
	LinkByEmail *bool `json:"link_by_email,omitempty"`
	// Whether a first sign-in with an unknown address creates an account,
	// as `registration` allows (`signup off`: signup_not_allowed).
	// Default: on.
	Signup *bool `json:"signup,omitempty"`
}

// socialKinds are the providers known by name, with their issuer (for
// the OpenID Connect ones) and display name.
var socialKinds = map[string]struct{ issuer, name string }{
	"google":    {"https://accounts.google.com", "Google"},
	"microsoft": {"https://login.microsoftonline.com/%s/v2.0", "Microsoft"},
	"gitlab":    {"https://gitlab.com", "GitLab"},
	"apple":     {social.AppleIssuer, "Apple"},
	"github":    {"", "GitHub"},
	"oidc":      {"", ""},
}

var socialIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// socialReservedIDs are the names of the fixed endpoints under
// {prefix}/social/: a provider so named would have its paths answered by
// them (social/accounts/<anything>/ is the removal of a link).
var socialReservedIDs = []string{"accounts", "providers"}

// issuer is the provider's issuer URL.
func (p SocialProvider) issuer() string {
	switch p.Kind {
	case "oidc":
		return p.Issuer
	case "microsoft":
		return fmt.Sprintf(socialKinds["microsoft"].issuer, p.Tenant)
	}
	return socialKinds[p.Kind].issuer
}

// validateSocial checks the providers without any I/O.
func validateSocial(providers []SocialProvider) error {
	seen := map[string]bool{}
	for _, p := range providers {
		if !socialIDPattern.MatchString(p.ID) {
			return fmt.Errorf("social %q: an id is 1 to 32 lower-case letters, digits, '-' or '_'", p.ID)
		}
		if slices.Contains(socialReservedIDs, p.ID) {
			return fmt.Errorf("social %s: the id is reserved for the endpoints under {prefix}/social/ (%s); choose another", p.ID, strings.Join(socialReservedIDs, ", "))
		}
		if seen[p.ID] {
			return fmt.Errorf("social %s: the id is used twice", p.ID)
		}
		seen[p.ID] = true
		if _, ok := socialKinds[p.Kind]; !ok {
			kinds := make([]string, 0, len(socialKinds))
			for k := range socialKinds {
				kinds = append(kinds, k)
			}
			slices.Sort(kinds)
			return fmt.Errorf("social %s: unknown kind %q (want one of %s)", p.ID, p.Kind, strings.Join(kinds, ", "))
		}
		if p.ClientID == "" {
			return fmt.Errorf("social %s: client_id is required", p.ID)
		}
		switch {
		case p.Kind == "oidc" && p.Issuer == "":
			return fmt.Errorf("social %s: an oidc provider needs its issuer URL: social %s oidc https://login.example.com", p.ID, p.ID)
		case p.Kind != "oidc" && p.Issuer != "":
			return fmt.Errorf("social %s: the issuer of %s is known; give an issuer only with kind oidc", p.ID, p.Kind)
		case p.Kind == "microsoft" && (p.Tenant == "" || strings.ContainsAny(p.Tenant, "/?#")):
			return fmt.Errorf("social %s: microsoft needs `tenant <tenant id or domain>`", p.ID)
		case p.Kind != "microsoft" && p.Tenant != "":
			return fmt.Errorf("social %s: tenant is a microsoft option", p.ID)
		}
		apple := p.Kind == "apple"
		switch {
		case apple && (p.TeamID == "" || p.KeyID == "" || p.PrivateKey == ""):
			return fmt.Errorf("social %s: apple needs team_id, key_id and private_key (the .p8 key, e.g. {file./run/secrets/apple.p8})", p.ID)
		case !apple && (p.TeamID != "" || p.KeyID != "" || p.PrivateKey != ""):
			return fmt.Errorf("social %s: team_id, key_id and private_key are apple options", p.ID)
		case apple && p.ClientSecret != "":
			return fmt.Errorf("social %s: apple's client secret is made from private_key; give no client_secret", p.ID)
		case p.Kind == "github" && p.ClientSecret == "":
			return fmt.Errorf("social %s: github needs its client_secret", p.ID)
		case p.Kind != "github" && (p.WebURL != "" || p.APIURL != ""):
			return fmt.Errorf("social %s: web_url and api_url are github options", p.ID)
		}
		if p.Kind == "github" {
			continue
		}
		if err := social.CheckIssuer(p.issuer()); err != nil {
			return fmt.Errorf("social %s: %v", p.ID, err)
		}
	}
	return nil
}

// checkCallbackURLs accepts absolute http(s) URLs without a fragment:
// the redirect URIs a client registered at its providers.
func checkCallbackURLs(urls []string) error {
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			return fmt.Errorf("social_callback_urls: %q is not an absolute http(s) URL", raw)
		}
	}
	return nil
}

// socialList is the list the providers endpoint shows, placeholders
// expanded.
func socialList(providers []SocialProvider, repl *caddy.Replacer) []web.SocialProvider {
	var listed []web.SocialProvider
	for _, p := range providers {
		name := p.Name
		if name == "" {
			name = socialKinds[p.Kind].name
		}
		if name == "" {
			name = p.ID
		}
		listed = append(listed, web.SocialProvider{ID: p.ID, Name: name, ClientID: repl.ReplaceAll(p.ClientID, "")})
	}
	return listed
}

// coreProviders makes the providers' clients, placeholders expanded. No
// provider is called here: discovery and keys are fetched on first use;
// an Apple key that does not parse is refused now.
func coreProviders(providers []SocialProvider, repl *caddy.Replacer) ([]account.Provider, error) {
	var out []account.Provider
	for _, p := range providers {
		client, err := p.client(repl)
		if err != nil {
			return nil, err
		}
		out = append(out, account.Provider{
			ID: p.ID, ClientID: repl.ReplaceAll(p.ClientID, ""),
			EmailLinking: p.LinkByEmail == nil || *p.LinkByEmail,
			Signup:       p.Signup == nil || *p.Signup,
			Client:       client,
		})
	}
	return out, nil
}

// client is the provider's client, placeholders expanded.
func (p SocialProvider) client(repl *caddy.Replacer) (account.IdentityClient, error) {
	expand := func(s string) string { return repl.ReplaceAll(s, "") }
	switch p.Kind {
	case "github":
		g, err := social.NewGitHub(social.GitHubConfig{ID: p.ID, ClientID: expand(p.ClientID), ClientSecret: expand(p.ClientSecret),
			WebURL: expand(p.WebURL), APIURL: expand(p.APIURL), Scopes: p.Scopes})
		return githubClient{codeClient{g}, g}, err
	case "apple":
		secret, err := social.NewAppleSecret(social.AppleConfig{TeamID: expand(p.TeamID), KeyID: expand(p.KeyID),
			ClientID: expand(p.ClientID), Key: []byte(expand(p.PrivateKey))})
		if err != nil {
			return nil, fmt.Errorf("social %s: private_key: %w", p.ID, err)
		}
		scopes := p.Scopes
		if len(scopes) == 0 {
			scopes = []string{"openid", "name", "email"}
		}
		c, err := social.NewOIDC(social.OIDCConfig{ID: p.ID, Issuer: social.AppleIssuer, ClientID: expand(p.ClientID),
			ClientSecretFunc: secret.Secret, Scopes: scopes, FormPost: true})
		return oidcClient{codeClient{c}, c}, err
	}
	c, err := social.NewOIDC(social.OIDCConfig{ID: p.ID, Issuer: expand(p.issuer()), ClientID: expand(p.ClientID),
		ClientSecret: expand(p.ClientSecret), Scopes: p.Scopes})
	return oidcClient{codeClient{c}, c}, err
}

// codeClient is a provider's code flow as the core asks for it, for the
// clients of caddyauth/social.
type codeClient struct {
	flow interface {
		AuthCodeURL(ctx context.Context, redirect string, a social.Attempt) (string, error)
		Exchange(ctx context.Context, redirect, code, verifier, nonce string) (social.Identity, error)
	}
}

func (c codeClient) Exchange(ctx context.Context, redirect, code, verifier, nonce string) (account.SocialIdentity, error) {
	return coreIdentity(c.flow.Exchange(ctx, redirect, code, verifier, nonce))
}

func (c codeClient) AuthCodeURL(ctx context.Context, redirect, state, nonce, verifier string) (string, error) {
	return c.flow.AuthCodeURL(ctx, redirect, social.Attempt{State: state, Nonce: nonce, Verifier: verifier})
}

// githubClient is GitHub as the core asks for it: an access token is
// proven ours with the app's credentials; GitHub issues no ID token.
type githubClient struct {
	codeClient
	g *social.GitHub
}

func (c githubClient) VerifyToken(ctx context.Context, _, accessToken string) (account.SocialIdentity, error) {
	if accessToken == "" {
		return account.SocialIdentity{}, account.ErrFlowNotSupported
	}
	return coreIdentity(c.g.VerifyAccessToken(ctx, accessToken))
}

// oidcClient is an OpenID Connect provider as the core asks for it.
type oidcClient struct {
	codeClient
	p *social.OIDC
}

// VerifyToken checks an ID token. An access token alone cannot be bound
// to this site's client, so it is not a flow an OpenID provider offers
// here.
func (c oidcClient) VerifyToken(ctx context.Context, idToken, _ string) (account.SocialIdentity, error) {
	if idToken == "" {
		return account.SocialIdentity{}, account.ErrFlowNotSupported
	}
	return coreIdentity(c.p.VerifyIDToken(ctx, idToken, ""))
}

// coreIdentity is a provider's answer in the core's terms: its verdicts
// become the core's errors; an unreachable provider stays a failure.
func coreIdentity(id social.Identity, err error) (account.SocialIdentity, error) {
	switch {
	case errors.Is(err, social.ErrAudience):
		return account.SocialIdentity{}, fmt.Errorf("%w: %v", account.ErrSocialAudience, err)
	case errors.Is(err, social.ErrInvalidToken):
		return account.SocialIdentity{}, fmt.Errorf("%w: %v", account.ErrSocialToken, err)
	case err != nil:
		return account.SocialIdentity{}, err
	}
	first, last, _ := strings.Cut(strings.TrimSpace(id.Name), " ")
	return account.SocialIdentity{Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified, FirstName: first, LastName: last}, nil
}

// unmarshalSocial reads one provider:
//
//	social <id> [<kind> [<issuer>]] {
//		client_id <id>
//		client_secret <secret>
//		name <display name>
//		scopes <scope...>
//		tenant <tenant>                       (microsoft)
//		team_id <id>; key_id <id>; private_key <pem> (apple)
//		web_url <url>; api_url <url>          (github: Enterprise Server)
//		link_by_email on|off
//		signup on|off
//	}
func (a *App) unmarshalSocial(d *caddyfile.Dispenser) error {
	var p SocialProvider
	if !d.NextArg() {
		return d.ArgErr()
	}
	p.ID = d.Val()
	p.Kind = p.ID
	if d.NextArg() {
		p.Kind = d.Val()
		if d.NextArg() {
			p.Issuer = d.Val()
		}
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := map[string]*string{"client_id": &p.ClientID, "client_secret": &p.ClientSecret, "name": &p.Name, "tenant": &p.Tenant,
		"team_id": &p.TeamID, "key_id": &p.KeyID, "private_key": &p.PrivateKey, "web_url": &p.WebURL, "api_url": &p.APIURL}
	switches := map[string]**bool{"link_by_email": &p.LinkByEmail, "signup": &p.Signup}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if dst := switches[opt]; dst != nil {
			var v string
			if !d.AllArgs(&v) || (v != "on" && v != "off") {
				return d.Errf("social %s: %s takes on or off", p.ID, opt)
			}
			on := v == "on"
			*dst = &on
			continue
		}
		if opt == "scopes" {
			if p.Scopes = d.RemainingArgs(); len(p.Scopes) == 0 {
				return d.ArgErr()
			}
			continue
		}
		dst := fields[opt]
		if dst == nil {
			return d.Errf("unrecognized social option '%s'", opt)
		}
		if !d.AllArgs(dst) {
			return d.ArgErr()
		}
	}
	if err := validateSocial(append(slices.Clone(a.Social), p)); err != nil {
		return d.Err(err.Error())
	}
	a.Social = append(a.Social, p)
	return nil
}
