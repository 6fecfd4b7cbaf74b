package social

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GitHubConfig is a GitHub OAuth app.
type GitHubConfig struct {
	ID           string // the provider's id in paths and rows, e.g. "github"
	ClientID     string
	ClientSecret string
	// WebURL is the host of the sign-in page and the token endpoint
	// (default https://github.com), APIURL the REST API's (default
	// https://api.github.com): https, or http on a loopback address.
	WebURL, APIURL string
	Scopes         []string // default: read:user user:email
	// HTTPClient makes the calls to GitHub; nil means one with a 10 s
	// timeout.
	HTTPClient *http.Client
}

// GitHub signs in with GitHub, which speaks OAuth 2.0 but not OpenID
// Connect: no ID token, so the identity is read from its REST API with
// the access token, and an access token given by a client is proven ours
// with the app's credentials before it is believed.
type GitHub struct {
	cfg GitHubConfig
}

// maxAnswer bounds what is read of one answer from GitHub.
const maxAnswer = 1 << 20

// NewGitHub checks cfg. The secret is required: GitHub wants it to redeem
// a code and to check a token.
func NewGitHub(cfg GitHubConfig) (*GitHub, error) {
	if cfg.ID == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("social: a GitHub provider needs an id, a client_id and a client_secret")
	}
	if cfg.WebURL == "" {
		cfg.WebURL = "https://github.com"
	}
	if cfg.APIURL == "" {
		cfg.APIURL = "https://api.github.com"
	}
	for _, u := range []struct {
		what string
		url  *string
	}{{"web URL", &cfg.WebURL}, {"API URL", &cfg.APIURL}} {
		if err := checkURL(u.what, *u.url); err != nil {
			return nil, fmt.Errorf("social %s: %w", cfg.ID, err)
		}
		*u.url = strings.TrimSuffix(*u.url, "/")
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{"read:user", "user:email"}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &GitHub{cfg: cfg}, nil
}

// AuthCodeURL is where a browser is sent to sign in with GitHub and come
// back to redirect with a code: the attempt's state and PKCE challenge
// (S256) go with it. GitHub knows no nonce.
func (g *GitHub) AuthCodeURL(_ context.Context, redirect string, a Attempt) (string, error) {
	q := url.Values{
		"client_id":             {g.cfg.ClientID},
		"redirect_uri":          {redirect},
		"scope":                 {strings.Join(g.cfg.Scopes, " ")},
		"state":                 {a.State},
		"code_challenge":        {Challenge(a.Verifier)},
		"code_challenge_method": {"S256"},
	}
	return g.cfg.WebURL + "/login/oauth/authorize?" + q.Encode(), nil
}

// Exchange redeems a code GitHub sent back to redirect, with the PKCE
// verifier ("" for a client that used none), and returns the identity
// the access token reads from the API. nonce is ignored: GitHub has none.
func (g *GitHub) Exchange(ctx context.Context, redirect, code, verifier, _ string) (Identity, error) {
	form := url.Values{"client_id": {g.cfg.ClientID}, "client_secret": {g.cfg.ClientSecret},
		"code": {code}, "redirect_uri": {redirect}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.cfg.WebURL+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	if err != nil {
		return Identity{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	status, err := g.do(req, &tok)
	switch {
	case err != nil:
		return Identity{}, err
	// GitHub answers a refusal with 200 and an error member.
	case tok.Error == "incorrect_client_credentials":
		return Identity{}, fmt.Errorf("%w: %s refused our client_id or client_secret: %s", ErrUnavailable, g.cfg.ID, tok.Description)
	case tok.Error != "" || status != http.StatusOK:
		return Identity{}, fmt.Errorf("%w: GitHub refused the code (%d %s): %s", ErrInvalidToken, status, tok.Error, tok.Description)
	case tok.AccessToken == "":
		return Identity{}, fmt.Errorf("%w: %s token endpoint: an answer without access_token", ErrUnavailable, g.cfg.ID)
	}
	return g.identity(ctx, tok.AccessToken)
}

// VerifyAccessToken believes an access token a client got from GitHub
// itself only once GitHub says it was issued to our app: the "check a
// token" API, with the app's credentials. A token GitHub knows but under
// another app is ErrAudience. Then the identity is read with it.
func (g *GitHub) VerifyAccessToken(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no access token", ErrInvalidToken)
	}
	body, _ := json.Marshal(map[string]string{"access_token": token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		g.cfg.APIURL+"/applications/"+url.PathEscape(g.cfg.ClientID)+"/token", bytes.NewReader(body))
	if err != nil {
		return Identity{}, err
	}
	req.SetBasicAuth(g.cfg.ClientID, g.cfg.ClientSecret)
	req.Header.Set("Content-Type", "application/json")
	apiHeaders(req)
	var check struct {
		App struct {
			ClientID string `json:"client_id"`
		} `json:"app"`
	}
	status, err := g.do(req, &check)
	switch {
	case err != nil:
		return Identity{}, err
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return Identity{}, fmt.Errorf("%w: %s refused our client_id or client_secret checking a token (%d)", ErrUnavailable, g.cfg.ID, status)
	case status == http.StatusNotFound || status == http.StatusUnprocessableEntity:
		// Not a token of ours: another app's if GitHub lets it read the user.
		if _, err := g.user(ctx, token); err == nil {
			return Identity{}, fmt.Errorf("%w: the GitHub token was issued to another app", ErrAudience)
		}
		return Identity{}, fmt.Errorf("%w: GitHub does not know the token (%d)", ErrInvalidToken, status)
	case status != http.StatusOK:
		return Identity{}, fmt.Errorf("%w: %s checking a token: status %d", ErrUnavailable, g.cfg.ID, status)
	case check.App.ClientID != g.cfg.ClientID:
		return Identity{}, fmt.Errorf("%w: the GitHub token was issued to app %q", ErrAudience, check.App.ClientID)
	}
	return g.identity(ctx, token)
}

// identity reads who the access token belongs to: the user's id (the
// subject), name (the login when they gave none), and their primary
// address with whether GitHub verified it.
func (g *GitHub) identity(ctx context.Context, token string) (Identity, error) {
	u, err := g.user(ctx, token)
	if err != nil {
		return Identity{}, err
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := g.get(ctx, token, "/user/emails", &emails); err != nil {
		return Identity{}, err
	}
	id := Identity{Provider: g.cfg.ID, Subject: strconv.FormatInt(u.ID, 10), Name: u.Name}
	if id.Name == "" {
		id.Name = u.Login
	}
	for _, e := range emails {
		if e.Primary {
			id.Email, id.EmailVerified = e.Email, e.Verified
		}
	}
	return id, nil
}

type githubUser struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

// user is GET /user with the token.
func (g *GitHub) user(ctx context.Context, token string) (githubUser, error) {
	var u githubUser
	if err := g.get(ctx, token, "/user", &u); err != nil {
		return githubUser{}, err
	}
	if u.ID <= 0 {
		return githubUser{}, fmt.Errorf("%w: %s /user: no id", ErrUnavailable, g.cfg.ID)
	}
	return u, nil
}

// get reads an API path with the token into v: a 4xx is the token's
// fault (bad, revoked, or without the scope).
func (g *GitHub) get(ctx context.Context, token, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.cfg.APIURL+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	apiHeaders(req)
	status, err := g.do(req, v)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusOK:
		return nil
	case status >= 400:
		return fmt.Errorf("%w: GitHub %s answered %d to the token", ErrInvalidToken, path, status)
	}
	return fmt.Errorf("%w: %s %s: status %d", ErrUnavailable, g.cfg.ID, path, status)
}

func apiHeaders(req *http.Request) {
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
}

// do sends req and decodes a 200 answer's JSON into v, returning the
// status. A failed connection, a 5xx, rate limiting, or a 200 that is not
// JSON is ErrUnavailable.
func (g *GitHub) do(req *http.Request, v any) (int, error) {
	res, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrUnavailable, g.cfg.ID, err)
	}
	defer res.Body.Close()
	limited := res.StatusCode == http.StatusTooManyRequests ||
		res.StatusCode == http.StatusForbidden && res.Header.Get("X-RateLimit-Remaining") == "0"
	if res.StatusCode >= 500 || limited {
		return 0, fmt.Errorf("%w: %s %s: status %d", ErrUnavailable, g.cfg.ID, req.URL.Path, res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return 0, fmt.Errorf("%w: %s %s: %v", ErrUnavailable, g.cfg.ID, req.URL.Path, err)
	}
	if res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, v); err != nil {
			return 0, fmt.Errorf("%w: %s %s: not JSON: %v", ErrUnavailable, g.cfg.ID, req.URL.Path, err)
		}
	}
	return res.StatusCode, nil
}
