package caddyauth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// testSecret is an HS256 key for tests only; it enters the config through
// an environment placeholder, as a real one must.
const testSecret = "test-only-hs256-key-not-for-production-use-000"

// forge signs claims like the realm's own with the test secret, letting a
// test bend one claim at a time.
func forge(t *testing.T, method jwt.SigningMethod, key any, mutate func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"token_type": "access", "user_id": "1", "sub": "1", "session": strings.Repeat("a", 32),
		"session_iat": now.Unix(), "role": 0, "email_verified": true, "jti": strings.Repeat("b", 32),
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"iss": "caddy-jwt-allauth", "aud": "caddy-jwt-allauth",
	}
	if mutate != nil {
		mutate(c)
	}
	tok, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestGuardRejectsBadTokensE2E(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", testSecret)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "signing_key {env.TEST_JWT_SECRET}", defaultBody))
	mustCreateUser(t, userEmail, userPass, 0)
	access, refresh := s.login(userEmail, userPass)

	// The genuine token passes and fills the placeholders.
	r := s.get("/", bearer(access)).expect(t, 200)
	if string(r.raw) != "user="+claims(t, access)["user_id"].(string)+" role=0 verified=true" {
		t.Fatalf("placeholders: %q", r.raw)
	}
	// The scheme is case-insensitive.
	s.get("/", "Authorization: bearer "+access).expect(t, 200)
	s.get("/", "Authorization: BEARER "+access).expect(t, 200)
	// A forged token with the right key passes (proves forge matches).
	s.get("/", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), nil))).expect(t, 200)

	other := []byte(strings.Repeat("x", 48))
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload, _ := json.Marshal(map[string]any{"token_type": "access", "user_id": "1", "session": strings.Repeat("a", 32), "exp": time.Now().Add(time.Hour).Unix(), "iss": "caddy-jwt-allauth", "aud": "caddy-jwt-allauth"})
	algNone := header + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
	parts := strings.Split(access, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"token_type":"access","user_id":"1","role":1000}`)) + "." + parts[2]

	cases := []struct {
		name, header string
	}{
		{"no token", ""},
		{"other scheme", "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("a:b"))},
		{"empty bearer", "Authorization: Bearer "},
		{"malformed", bearer("not.a.jwt")},
		{"garbage", bearer("%%%%")},
		{"bad signature", bearer(forge(t, jwt.SigningMethodHS256, other, nil))},
		{"payload swapped", bearer(tampered)},
		{"alg none", bearer(algNone)},
		{"EdDSA under an HS realm", bearer(forge(t, jwt.SigningMethodEdDSA, edKey, nil))},
		{"HS384 with the right key", bearer(forge(t, jwt.SigningMethodHS384, []byte(testSecret), nil))},
		{"expired", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }))},
		{"no exp", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c jwt.MapClaims) { delete(c, "exp") }))},
		{"wrong aud", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c jwt.MapClaims) { c["aud"] = "other-app" }))},
		{"wrong iss", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c jwt.MapClaims) { c["iss"] = "someone-else" }))},
		{"refresh token", bearer(refresh)},
		{"refresh-typed forgery", bearer(forge(t, jwt.SigningMethodHS256, []byte(testSecret), func(c jwt.MapClaims) { c["token_type"] = "refresh" }))},
		{"oversized", bearer(access + strings.Repeat("A", 9000))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r reply
			if tc.header == "" {
				r = s.get("/")
			} else {
				r = s.get("/", tc.header)
			}
			r.expect(t, 401)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("no Bearer challenge: %v", r.header)
			}
			if r.str("detail") == "" || strings.Contains(string(r.raw), "user=") {
				t.Fatalf("401 body: %s", r.raw)
			}
		})
	}

	// An expired genuine token, by the realm's clock.
	advance(t, 31*time.Minute)
	r = s.get("/", bearer(access)).expect(t, 401)
	if msgs, _ := r.body["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["message"] != "Token is expired" {
		t.Fatalf("expired body: %s", r.raw)
	}
}

func TestGuardConfusionEdDSAE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", defaultBody))
	mustCreateUser(t, userEmail, userPass, 0)
	access, _ := s.login(userEmail, userPass)
	if h := strings.Split(access, ".")[0]; !strings.Contains(mustB64(t, h), `"EdDSA"`) {
		t.Fatalf("default key is not EdDSA: %s", mustB64(t, h))
	}
	s.get("/", bearer(access)).expect(t, 200)
	// HS256 signed with the published public key as the secret.
	r := s.get("/auth/.well-known/jwks.json").expect(t, 200)
	keys := r.body["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("jwks: %s", r.raw)
	}
	k := keys[0].(map[string]any)
	if k["kty"] != "OKP" || k["crv"] != "Ed25519" || k["kid"] == "" || k["alg"] != "EdDSA" {
		t.Fatalf("jwk: %v", k)
	}
	pub, err := base64.RawURLEncoding.DecodeString(k["x"].(string))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("jwk x: %v", err)
	}
	// The published key verifies our token (an upstream can check it).
	parsed, err := jwt.Parse(access, func(*jwt.Token) (any, error) { return ed25519.PublicKey(pub), nil }, jwt.WithValidMethods([]string{"EdDSA"}))
	if err != nil || !parsed.Valid {
		t.Fatalf("JWKS key does not verify the access token: %v", err)
	}
	s.get("/", bearer(forge(t, jwt.SigningMethodHS256, pub, nil))).expect(t, 401)
	s.get("/", bearer(forge(t, jwt.SigningMethodHS256, []byte(k["x"].(string)), nil))).expect(t, 401)
}

func mustB64(t *testing.T, s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGuardRolesHeadersAndPreflightE2E(t *testing.T) {
	body := `	jwt_allauth {
		prefix /auth
	}
	handle /admin* {
		jwt_allauth_guard {
			roles 900 1000
		}
		respond "admin {http.auth.user.id}"
	}
	handle {
		jwt_allauth_guard {
			header X-User-Id user_id
			header X-User-Role role
		}
		respond "id=[{http.request.header.X-User-Id}] role=[{http.request.header.X-User-Role}] spoof=[{http.request.header.X-User_Id}]"
	}`
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", body))
	staff := mustCreateUser(t, "staff@world.com", userPass, 1000)
	mustCreateUser(t, userEmail, userPass, 0)
	mustCreateUser(t, "custom@world.com", userPass, 300)
	aUser, _ := s.login(userEmail, userPass)
	aStaff, _ := s.login("staff@world.com", userPass)
	aCustom, _ := s.login("custom@world.com", userPass)

	r := s.get("/admin/x", bearer(aUser)).expect(t, 403)
	if r.str("detail") != "You do not have permission to perform this action." {
		t.Fatalf("403 body: %s", r.raw)
	}
	s.get("/admin/x", bearer(aCustom)).expect(t, 403)
	r = s.get("/admin/x", bearer(aStaff)).expect(t, 200)
	if string(r.raw) != "admin "+strconv.FormatInt(staff.ID, 10) {
		t.Fatalf("admin body %q", r.raw)
	}
	s.get("/admin/x").expect(t, 401)

	// Client-sent identity headers are removed before ours are set.
	r = s.get("/app", bearer(aStaff), "X-User-Id: 1", "X-User_Id: 1", "x-user-role: 1000").expect(t, 200)
	want := "id=[" + strconv.FormatInt(staff.ID, 10) + "] role=[1000] spoof=[]"
	if string(r.raw) != want {
		t.Fatalf("headers: %q, want %q", r.raw, want)
	}
	// Without a token the spoofed header never reaches the upstream.
	s.get("/app", "X-User-Id: 1").expect(t, 401)

	// The guard answers a CORS preflight itself (see cors_e2e_test.go);
	// a plain OPTIONS needs a token.
	r = s.req("OPTIONS", "/app", nil, "Origin: https://app.example", "Access-Control-Request-Method: GET").expect(t, 204)
	if len(r.raw) != 0 {
		t.Fatalf("preflight: %q", r.raw)
	}
	s.req("OPTIONS", "/app", nil).expect(t, 401)
}

// TestStartupRefusals: settings that would silently weaken the realm stop
// Caddy from starting.
// refusesToStart loads the Caddyfile cf and fails the test unless Caddy
// refuses it with an error that contains want.
func refusesToStart(t *testing.T, cf, want string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err == nil {
		err = caddy.Load(cfg, true)
		if err == nil {
			_ = caddy.Stop()
		}
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want it to contain %q", err, want)
	}
}

func TestStartupRefusals(t *testing.T) {
	for name, tc := range map[string]struct{ options, body, want string }{
		"empty signing key placeholder": {"signing_key {env.JWT_ALLAUTH_TEST_UNSET_VAR}", defaultBody, "signing_key is set but expands to an empty value"},
		"short signing key":             {"signing_key short-key", defaultBody, "at least 32"},
		"prefix as a matcher":           {"", "\tjwt_allauth /auth\n\trespond ok", "prefix as a subdirective"},
		"identity into Authorization":   {"", "\tjwt_allauth_guard {\n\t\theader Authorization user_id\n\t}\n\trespond ok", "refusing to overwrite"},
	} {
		t.Run(name, func(t *testing.T) {
			cf := caddyfile("store sqlite "+t.TempDir()+"/a.db", tc.options, tc.body)
			refusesToStart(t, cf, tc.want)
		})
	}
}

// Template directories are checked at start: a misspelt directory is not
// silently replaced by the built-in templates, and a page template that
// names a field pages do not have stops the start rather than answering a
// visitor with an error (before: 503 "try again later", logged as an
// outage).
func TestTemplateRefusals(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "login.html"), []byte(`{{define "content"}}{{.Nope}}{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	for name, tc := range map[string]struct{ options, body, want string }{
		"missing page templates": {"", "\tjwt_allauth {\n\t\tprefix /auth\n\t\ttemplates " + missing + "\n\t}\n\trespond ok", "no-such-dir"},
		"missing mail templates": {"mail log {\n\t\t\ttemplates " + missing + "\n\t\t}", defaultBody, "no-such-dir"},
		"page naming a field":    {"", "\tjwt_allauth {\n\t\tprefix /auth\n\t\ttemplates " + bad + "\n\t}\n\trespond ok", "login.html"},
	} {
		t.Run(name, func(t *testing.T) {
			cf := caddyfile("store sqlite "+t.TempDir()+"/a.db", tc.options, tc.body)
			refusesToStart(t, cf, tc.want)
		})
	}
}
