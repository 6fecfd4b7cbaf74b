// Package githubtest is a small OAuth 2.0 server that answers like GitHub
// for the tests of social login: the authorize page a browser signs in on
// (or a query parameter that approves without HTML), the token endpoint
// with client credentials, single-use codes, the redirect URI and PKCE
// S256 checked, the REST API's /user and /user/emails, and the "check a
// token" endpoint an app uses to prove a token was issued to it. One
// loopback server serves both GitHub's web host and its API host.
package githubtest

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Email is one of a user's addresses as /user/emails lists it.
type Email struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// User is a GitHub account.
type User struct {
	ID     int64
	Login  string
	Name   string // "" is answered as null, as GitHub does for a user without one
	Emails []Email
}

// DefaultScope is the scope of a token minted without one, and of a code
// authorized without one: what the client of social login asks for.
const DefaultScope = "read:user,user:email"

// codeLifetime is how long a code may be redeemed, as at GitHub.
const codeLifetime = 10 * time.Minute

// grant is what an issued code stands for.
type grant struct {
	redirectURI, challenge, login, scope string
	expires                              time.Time
}

// token is what an access token stands for.
type token struct{ clientID, login, scope string }

// Server is the fake GitHub. Its one app is ClientID with ClientSecret;
// tokens of other apps can be minted (MintToken) but never checked with
// their credentials.
type Server struct {
	ClientID, ClientSecret string

	srv *httptest.Server

	mu          sync.Mutex
	users       map[string]User // by login
	codes       map[string]grant
	tokens      map[string]token
	autoApprove string
}

// New starts a server on loopback for the app clientID with secret.
func New(clientID, secret string) *Server {
	s := &Server{ClientID: clientID, ClientSecret: secret,
		users: map[string]User{}, codes: map[string]grant{}, tokens: map[string]token{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", s.authorizePage)
	mux.HandleFunc("POST /login/oauth/authorize", s.authorizeForm)
	mux.HandleFunc("POST /login/oauth/access_token", s.accessToken)
	mux.HandleFunc("GET /user", s.user)
	mux.HandleFunc("GET /user/emails", s.emails)
	mux.HandleFunc("POST /applications/{client_id}/token", s.checkToken)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the base URL of both the web host and the API host.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server; calls made afterwards fail to connect.
func (s *Server) Close() { s.srv.Close() }

// AddUser adds or replaces a user.
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.Login] = u
}

// AutoApprove makes every authorize request sign login in at once, as a
// browser would by choosing them and clicking "Sign in"; "" shows the
// page again.
func (s *Server) AutoApprove(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.autoApprove = login
}

// MintToken issues an access token of the app clientID (ours or any
// other) for the user login, with scope (comma-separated, DefaultScope
// when "").
func (s *Server) MintToken(clientID, login, scope string) string {
	if scope == "" {
		scope = DefaultScope
	}
	t := "gho_" + random()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t] = token{clientID: clientID, login: login, scope: scope}
	return t
}

func random() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var page = template.Must(template.New("authorize").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to GitHub</title></head>
<body><h1>Sign in to GitHub</h1>
<p>to continue to {{.ClientID}}</p>
<form method="post" action="/login/oauth/authorize">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<label for="login">Account</label>
<select id="login" name="login">{{range .Logins}}<option value="{{.}}">{{.}}</option>{{end}}</select>
<button type="submit" id="sign-in" name="action" value="approve">Sign in</button>
<button type="submit" id="cancel" name="action" value="deny">Cancel</button>
</form></body></html>
`))

// authParams are the parameters of an authorize request that the page
// carries to its form.
var authParams = []string{"client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"}

// checkAuthorize refuses a request GitHub would show an error page for:
// an unknown client, no redirect URI, or a PKCE method other than S256.
func (s *Server) checkAuthorize(w http.ResponseWriter, q url.Values) bool {
	msg := ""
	switch u, err := url.Parse(q.Get("redirect_uri")); {
	case q.Get("client_id") != s.ClientID:
		msg = "unknown client_id"
	case err != nil || !u.IsAbs():
		msg = "redirect_uri must be an absolute URL"
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256":
		msg = "code_challenge_method must be S256"
	default:
		return true
	}
	http.Error(w, msg, http.StatusBadRequest)
	return false
}

// authorizePage answers GET /login/oauth/authorize: the sign-in page, or
// at once the redirect back when the request names login=<login> or the
// server auto-approves.
func (s *Server) authorizePage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkAuthorize(w, q) {
		return
	}
	s.mu.Lock()
	login := s.autoApprove
	logins := make([]string, 0, len(s.users))
	for l := range s.users {
		logins = append(logins, l)
	}
	s.mu.Unlock()
	if l := q.Get("login"); l != "" {
		login = l
	}
	if login != "" {
		s.approve(w, r, q, login)
		return
	}
	slices.Sort(logins)
	params := map[string]string{}
	for _, k := range authParams {
		params[k] = q.Get(k)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, struct {
		ClientID string
		Params   map[string]string
		Logins   []string
	}{s.ClientID, params, logins})
}

// authorizeForm answers the page's form: Sign in or Cancel.
func (s *Server) authorizeForm(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || !s.checkAuthorize(w, r.PostForm) {
		return
	}
	if r.PostForm.Get("action") == "deny" {
		back(w, r, r.PostForm, url.Values{"error": {"access_denied"}, "error_description": {"The user has denied your application access."}})
		return
	}
	s.approve(w, r, r.PostForm, r.PostForm.Get("login"))
}

// approve issues a code for login and sends the browser back with it.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, q url.Values, login string) {
	scope := strings.Join(strings.Fields(strings.ReplaceAll(q.Get("scope"), ",", " ")), ",")
	if scope == "" {
		scope = DefaultScope
	}
	code := random()
	s.mu.Lock()
	_, known := s.users[login]
	if known {
		s.codes[code] = grant{redirectURI: q.Get("redirect_uri"), challenge: q.Get("code_challenge"),
			login: login, scope: scope, expires: time.Now().Add(codeLifetime)}
	}
	s.mu.Unlock()
	if !known {
		http.Error(w, "no such user: "+login, http.StatusBadRequest)
		return
	}
	back(w, r, q, url.Values{"code": {code}})
}

// back redirects to the request's redirect_uri with params and its state.
func back(w http.ResponseWriter, r *http.Request, q url.Values, params url.Values) {
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := u.Query()
	for k, vs := range params {
		v[k] = vs
	}
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// accessToken answers POST /login/oauth/access_token. Like GitHub it
// answers a refusal with status 200 and an "error" member, and answers in
// JSON only when asked to (Accept: application/json), form-encoded
// otherwise.
func (s *Server) accessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f := r.PostForm
	id, secret := f.Get("client_id"), f.Get("client_secret")
	if u, p, ok := r.BasicAuth(); ok {
		id, secret = u, p
	}
	answer := func(v url.Values) {
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			out := map[string]string{}
			for k := range v {
				out[k] = v.Get(k)
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte(v.Encode()))
	}
	refuse := func(code, desc string) {
		answer(url.Values{"error": {code}, "error_description": {desc}})
	}
	if id != s.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		refuse("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	}
	s.mu.Lock()
	g, ok := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code")) // single use, even when refused below
	s.mu.Unlock()
	verifier := f.Get("code_verifier")
	switch {
	case !ok || time.Now().After(g.expires):
		refuse("bad_verification_code", "The code passed is incorrect or expired.")
	case f.Get("redirect_uri") != g.redirectURI:
		refuse("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
	case g.challenge == "" && verifier != "":
		refuse("bad_verification_code", "A code_verifier was sent for a code issued without a code_challenge.")
	case g.challenge != "" && subtle.ConstantTimeCompare([]byte(challenge(verifier)), []byte(g.challenge)) != 1:
		refuse("bad_verification_code", "The code_verifier does not match the code_challenge.")
	default:
		answer(url.Values{"access_token": {s.MintToken(id, g.login, g.scope)}, "token_type": {"bearer"}, "scope": {g.scope}})
	}
}

func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// bearer is the user and scope of the request's access token
// (Authorization: Bearer or token), or false after answering 401.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request) (User, string, bool) {
	h := r.Header.Get("Authorization")
	var t string
	for _, scheme := range []string{"Bearer ", "bearer ", "token "} {
		if v, ok := strings.CutPrefix(h, scheme); ok {
			t = v
		}
	}
	s.mu.Lock()
	tok, ok := s.tokens[t]
	u, known := s.users[tok.login]
	s.mu.Unlock()
	if t == "" || !ok || !known {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
		return User{}, "", false
	}
	return u, tok.scope, true
}

// apiUser is a user as the API shows them.
func apiUser(u User) map[string]any {
	var name any
	if u.Name != "" {
		name = u.Name
	}
	return map[string]any{"id": u.ID, "login": u.Login, "name": name, "type": "User"}
}

// user answers GET /user.
func (s *Server) user(w http.ResponseWriter, r *http.Request) {
	if u, _, ok := s.bearer(w, r); ok {
		writeJSON(w, http.StatusOK, apiUser(u))
	}
}

// emails answers GET /user/emails, for a token with the user:email (or
// user) scope, as GitHub does.
func (s *Server) emails(w http.ResponseWriter, r *http.Request) {
	u, scope, ok := s.bearer(w, r)
	if !ok {
		return
	}
	scopes := strings.Split(scope, ",")
	if !slices.Contains(scopes, "user:email") && !slices.Contains(scopes, "user") {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	list := u.Emails
	if list == nil {
		list = []Email{}
	}
	writeJSON(w, http.StatusOK, list)
}

// checkToken answers POST /applications/{client_id}/token: with the app's
// credentials in basic auth, whether the token in the body was issued to
// that app (200 with the token's app and user) or not (404).
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != r.PathValue("client_id") || id != s.ClientID ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.ClientSecret)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "Bad credentials"})
		return
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.AccessToken == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"message": "Validation Failed"})
		return
	}
	s.mu.Lock()
	tok, found := s.tokens[body.AccessToken]
	u, known := s.users[tok.login]
	s.mu.Unlock()
	if !found || !known || tok.clientID != id {
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "Not Found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"token":  body.AccessToken,
		"scopes": strings.Split(tok.scope, ","),
		"app":    map[string]string{"client_id": tok.clientID, "name": "test app"},
		"user":   apiUser(u),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
