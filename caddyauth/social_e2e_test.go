package caddyauth_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// Configured identity providers are checked at start, without calling
// them, and listed at {prefix}/social/providers/ without their secrets.
func TestSocialProvidersE2E(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	t.Setenv("JWT_ALLAUTH_TEST_SOCIAL_SECRET", "test-only-not-a-real-secret")
	opts := fmt.Sprintf(`social google {
		client_id google-client.apps.example.com
		client_secret {env.JWT_ALLAUTH_TEST_SOCIAL_SECRET}
	}
	social company oidc %s {
		client_id %s
		client_secret {env.JWT_ALLAUTH_TEST_SOCIAL_SECRET}
		name "Company SSO"
		scopes openid email
	}
`, m.Issuer(), m.ClientID)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", opts, defaultBody))
	r := s.get("/auth/social/providers/")
	r.expect(t, http.StatusOK)
	want := fmt.Sprintf(`[{"id":"google","name":"Google","client_id":"google-client.apps.example.com"},{"id":"company","name":"Company SSO","client_id":%q}]`, m.ClientID)
	if got := strings.TrimSpace(string(r.raw)); got != want {
		t.Fatalf("providers:\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(string(r.raw), "test-only-not-a-real-secret") {
		t.Fatal("the providers list shows a secret")
	}
}

func TestSocialWithoutProvidersE2E(t *testing.T) {
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "", defaultBody))
	s.get("/auth/social/providers/").expect(t, http.StatusNotFound)
}

func TestSocialStartupRefusals(t *testing.T) {
	for _, tc := range []struct{ social, want string }{
		{"social google {\n client_secret x\n}", "social google: client_id is required"},
		{"social company oidc http://login.example.com {\n client_id c\n}", "must be https"},
		{"social company oidc {\n client_id c\n}", "needs its issuer URL"},
		{"social gh github {\n client_id c\n}", "github needs its client_secret"},
		{"social fb facebook {\n client_id c\n}", `unknown kind "facebook"`},
		{"social apple {\n client_id com.example.web\n}", "apple needs team_id, key_id and private_key"},
		{"social apple {\n client_id com.example.web\n team_id T1\n key_id K1\n private_key not-a-key\n}", "social apple: private_key:"},
		{"social apple {\n client_id com.example.web\n team_id T1\n key_id K1\n private_key {file./nonexistent/apple.p8}\n}", "social apple: private_key:"},
		{"social google {\n client_id a\n team_id T1\n}", "apple options"},
		{"social google {\n client_id a\n signup maybe\n}", "signup takes on or off"},
		{"social_callback_urls /relative/path", "is not an absolute http(s) URL"},
		{"social google {\n client_id a\n}\nsocial google {\n client_id b\n}", "the id is used twice"},
		{"social google {\n client_id a\n colour blue\n}", "unrecognized social option 'colour'"},
		{"social Google {\n client_id a\n}", "an id is 1 to 32 lower-case"},
		{"social microsoft {\n client_id a\n}", "microsoft needs `tenant"},
		{"social google https://accounts.google.com {\n client_id a\n}", `unknown kind "https://accounts.google.com"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			refusesToStart(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", tc.social+"\n", defaultBody), tc.want)
		})
	}
}
