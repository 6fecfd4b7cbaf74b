package caddyauth_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/postgres"
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlite"
)

// The end-to-end tests run a real Caddy in this process, loaded from a real
// Caddyfile, and speak HTTP to it on loopback. One Caddy runs at a time, so
// these tests do not call t.Parallel.

// The site and admin ports are picked per test process: Caddy listens
// with SO_REUSEPORT, so two test processes on fixed ports would silently
// share connections between their servers.
var (
	testPort  = freePort()
	testAdmin = "127.0.0.1:" + freePort()
	testBase  = "http://127.0.0.1:" + testPort
)

// freePort returns a loopback port that was free a moment ago.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// pgDSNEnv names the environment variable with the PostgreSQL DSN. When it
// is set, every end-to-end test also runs on PostgreSQL, and an unreachable
// server fails the run.
const pgDSNEnv = "JWT_ALLAUTH_TEST_POSTGRES_DSN"

// backend is one store a test runs against: the Caddyfile `store` line.
type backend struct {
	name  string
	store func(t *testing.T) string
}

// backends lists SQLite always, and PostgreSQL when its DSN is given.
func backends() []backend {
	list := []backend{{"sqlite", func(t *testing.T) string {
		return "store sqlite " + filepath.Join(t.TempDir(), "auth.db")
	}}}
	if os.Getenv(pgDSNEnv) != "" {
		list = append(list, backend{"postgres", func(t *testing.T) string {
			return "store postgres " + freshSchemaDSN(t)
		}})
	}
	return list
}

// eachBackend runs fn as a subtest per backend.
func eachBackend(t *testing.T, fn func(t *testing.T, store string)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b.store(t)) })
	}
}

// freshSchemaDSN creates an empty schema on the test PostgreSQL server and
// returns a DSN whose search_path is that schema; the schema is dropped
// when the test ends.
func freshSchemaDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv(pgDSNEnv)
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("opening %s: %v", pgDSNEnv, err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := "e2e_" + randomHex(t, 6)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("PostgreSQL from %s is unreachable or refused: %v", pgDSNEnv, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP SCHEMA " + schema + " CASCADE")
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parsing %s: %v", pgDSNEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// site is a running Caddy with one test site on testBase (or on base,
// for a Caddy in another process).
type site struct {
	t      *testing.T
	client *http.Client
	base   string
}

// caddyfile builds the test Caddyfile: global options with the jwt_allauth
// block (store line plus extra options), and the site block body. Unless
// the options set throttles themselves, the request throttles are off:
// tests log in and verify far more often than a person, and the throttles
// have tests of their own.
func caddyfile(store, options, body string) string {
	if !strings.Contains(options, "throttle ") {
		for _, name := range caddyauth.ThrottleNames() {
			options += "\n\t\tthrottle " + name + " off"
		}
	}
	return fmt.Sprintf(`{
	admin %s
	http_port %s
	auto_https off
	persist_config off
	grace_period 5s
	log {
		level ERROR
	}
	jwt_allauth {
		%s
		cookie_insecure
		public_url %s
		%s
	}
}

http://127.0.0.1:%s {
%s
}
`, testAdmin, testPort, store, testBase, options, testPort, body)
}

// defaultBody is the test site: endpoints under /auth, then the guard in
// front of a response that echoes the identity placeholders.
const defaultBody = `	jwt_allauth {
		prefix /auth
	}
	jwt_allauth_guard
	respond "user={http.auth.user.id} role={http.auth.user.role} verified={http.auth.user.email_verified}"`

// startCaddy adapts and loads the Caddyfile into this process's Caddy and
// stops it when the test ends.
func startCaddy(t *testing.T, cf string) *site {
	t.Helper()
	loadCaddyfile(t, cf)
	waitServing(t)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	// A transport of its own: connections kept alive to an earlier test's
	// server would answer EOF once that server is gone.
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &site{t: t, client: &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// waitServing returns once fresh connections reach the server just
// loaded. Caddy returns from a load (and from a stop) once the old
// servers' shutdown has started, not finished: until then an old listener
// (a separate SO_REUSEPORT socket) may still take a connection and drop it.
// This waits for sockets, never for the realm's clock.
func waitServing(t *testing.T) {
	t.Helper()
	time.Sleep(200 * time.Millisecond)
	probe := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for ok, tries := 0, 0; ok < 5; tries++ {
		res, err := probe.Get(testBase + "/")
		if err == nil {
			res.Body.Close()
			ok++
			continue
		}
		if tries > 300 {
			t.Fatalf("the server does not answer: %v", err)
		}
		ok = 0
		time.Sleep(10 * time.Millisecond)
	}
}

// loadCaddyfile adapts a Caddyfile and loads it (a reload when Caddy is
// already running).
func loadCaddyfile(t *testing.T, cf string) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, warnings, err := adapter.Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, cf)
	}
	for _, w := range warnings {
		if !strings.Contains(w.Message, "not formatted") {
			t.Logf("adapt warning: %s", w)
		}
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	raw    []byte
	body   map[string]any
	list   []any
}

// str is a string field of the JSON body ("" when absent).
func (r reply) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

// fieldMsg is the first message of a DRF field error.
func (r reply) fieldMsg(field string) string {
	l, _ := r.body[field].([]any)
	if len(l) == 0 {
		return ""
	}
	s, _ := l[0].(string)
	return s
}

// cookie returns the value of a Set-Cookie of that name, and whether
// there was one.
func (r reply) cookie(name string) (*http.Cookie, bool) {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}

// req sends one request. body is marshalled to JSON unless it is a string
// (sent raw) or nil; headers are "Name: value" strings.
func (s *site) req(method, path string, body any, headers ...string) reply {
	s.t.Helper()
	out, err := s.try(method, path, body, headers...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// try is req for goroutines other than the test's: it returns its
// failure instead of ending the test.
func (s *site) try(method, path string, body any, headers ...string) (reply, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return reply{}, err
		}
		rd = bytes.NewReader(j)
	}
	base := s.base
	if base == "" {
		base = testBase
	}
	r, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return reply{}, err
	}
	if rd != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if strings.EqualFold(k, "Host") {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	res, err := s.client.Do(r)
	if err != nil {
		return reply{}, fmt.Errorf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, err
	}
	out := reply{status: res.StatusCode, header: res.Header, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		if len(raw) > 0 && raw[0] == '[' {
			_ = json.Unmarshal(raw, &out.list)
		} else if err := json.Unmarshal(raw, &out.body); err != nil {
			return reply{}, fmt.Errorf("%s %s: JSON body does not decode: %v\n%s", method, path, err, raw)
		}
	}
	return out, nil
}

func (s *site) post(path string, body any, headers ...string) reply {
	s.t.Helper()
	return s.req(http.MethodPost, path, body, headers...)
}

func (s *site) get(path string, headers ...string) reply {
	s.t.Helper()
	return s.req(http.MethodGet, path, nil, headers...)
}

// expect fails the test unless the status is want.
func (r reply) expect(t *testing.T, want int) reply {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body: %s", r.status, want, r.raw)
	}
	return r
}

// bearer is the Authorization header for an access token.
func bearer(tok string) string { return "Authorization: Bearer " + tok }

// cookieHeader is a Cookie header carrying a refresh token.
func refreshCookie(tok string) string { return "Cookie: refresh_token=" + tok }

// claims decodes a JWT's payload without verifying it (the server did).
func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// mustCreateUser seeds a user in the running realm.
func mustCreateUser(t *testing.T, email, password string, role int) account.User {
	t.Helper()
	u, err := caddyauth.CreateUser(email, password, role)
	if err != nil {
		t.Fatalf("creating user: %v", err)
	}
	return u
}

// advance moves the running realm's clock.
func advance(t *testing.T, d time.Duration) {
	t.Helper()
	if err := caddyauth.AdvanceClock(d); err != nil {
		t.Fatal(err)
	}
}

// login logs a user in and returns the access token and the refresh
// token from the cookie.
func (s *site) login(email, password string) (access, refresh string) {
	s.t.Helper()
	r := s.post("/auth/login/", map[string]string{"email": email, "password": password}).expect(s.t, 200)
	c, ok := r.cookie("refresh_token")
	if !ok {
		s.t.Fatalf("login set no refresh cookie: %v", r.header)
	}
	return r.str("access"), c.Value
}
