package caddyauth_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// runCLI runs `caddy jwt-allauth <args>` in process with stdin.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := caddyauth.CLI()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestUserCommandsE2E creates and manages users from the command line
// against the store a Caddyfile names, then logs in through a running
// Caddy on the same file.
func TestUserCommandsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := caddyfile(store, "", defaultBody)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := []string{"--config", path, "--adapter", "caddyfile"}

		out, err := runCLI(t, "Adm1n-Passw0rd-long\n", append([]string{"create-user", "--email", "Admin@Example.com", "--role", "1000", "--password-stdin"}, cfg...)...)
		if err != nil || !strings.Contains(out, "<admin@example.com> with role 1000") {
			t.Fatalf("create-user: %v\n%s", err, out)
		}
		if _, err := runCLI(t, "", append([]string{"create-user", "--email", "b@example.com", "--password", "x"}, cfg...)...); err == nil {
			t.Fatal("a password flag was accepted")
		}
		if _, err := runCLI(t, "Adm1n-Passw0rd-long\n", append([]string{"create-user", "--email", "admin@example.com", "--password-stdin"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("duplicate: %v", err)
		}
		if _, err := runCLI(t, "12345678\n", append([]string{"create-user", "--email", "c@example.com", "--password-stdin"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "entirely numeric") {
			t.Fatalf("weak password: %v", err)
		}
		if _, err := runCLI(t, "", append([]string{"create-user", "--email", "c@example.com"}, cfg...)...); err == nil {
			t.Fatal("create-user without --password-stdin worked")
		}
		if _, err := runCLI(t, "Us3r-Passw0rd-long\n", append([]string{"create-user", "--email", "user@example.com", "--password-stdin"}, cfg...)...); err != nil {
			t.Fatal(err)
		}
		if out, err := runCLI(t, "", append([]string{"set-role", "--email", "user@example.com", "--role", "300"}, cfg...)...); err != nil || !strings.Contains(out, "role 300") {
			t.Fatalf("set-role: %v %s", err, out)
		}
		if _, err := runCLI(t, "", append([]string{"set-role", "--email", "user@example.com"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "role") {
			t.Fatalf("set-role without --role: %v", err)
		}
		if _, err := runCLI(t, "", append([]string{"set-role", "--email", "user@example.com", "--role", "-5"}, cfg...)...); err == nil {
			t.Fatal("negative role accepted")
		}
		if _, err := runCLI(t, "", append([]string{"create-user", "--email", "d@example.com", "--password-stdin"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "no password") {
			t.Fatalf("empty stdin: %v", err)
		}
		if _, err := runCLI(t, "", append([]string{"set-role", "--email", "nobody@example.com", "--role", "1"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "no user") {
			t.Fatalf("set-role unknown: %v", err)
		}

		s := startCaddy(t, cf)
		a, refresh := s.login("admin@example.com", "Adm1n-Passw0rd-long")
		if claims(t, a)["role"] != float64(1000) {
			t.Fatalf("admin role: %v", claims(t, a))
		}
		ua, _ := s.login("user@example.com", "Us3r-Passw0rd-long")
		if claims(t, ua)["role"] != float64(300) {
			t.Fatalf("user role: %v", claims(t, ua))
		}

		// reset-mfa removes the factors and lifts a lockout.
		st, err := caddyauth.ActiveStore()
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		u, err := st.UserByEmail(ctx, "user@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateAuthenticator(ctx, account.Authenticator{UserID: u.ID, Type: "totp", Data: []byte("sealed")}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.CreateToken(ctx, account.Token{UserID: u.ID, Purpose: "mfa_login_attempt", Token: "x", Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if out, err := runCLI(t, "", append([]string{"list-users"}, cfg...)...); err != nil || !strings.Contains(out, "TOTP") {
			t.Fatalf("list-users: %v\n%s", err, out)
		}
		if out, err := runCLI(t, "", append([]string{"reset-mfa", "--email", "user@example.com"}, cfg...)...); err != nil || !strings.Contains(out, "lockout lifted") {
			t.Fatalf("reset-mfa: %v %s", err, out)
		}
		if auths, _ := st.Authenticators(ctx, u.ID); len(auths) != 0 {
			t.Fatalf("authenticators left: %v", auths)
		}
		if rows, _ := st.UserTokens(ctx, u.ID, "mfa_login_attempt", time.Time{}); len(rows) != 0 {
			t.Fatalf("failure rows left: %v", rows)
		}

		out, err = runCLI(t, "", append([]string{"list-users"}, cfg...)...)
		if err != nil || !strings.Contains(out, "admin@example.com") || !strings.Contains(out, "user@example.com") || strings.Contains(out, "argon2") {
			t.Fatalf("list-users: %v\n%s", err, out)
		}
		if _, err := runCLI(t, "", append([]string{"disable", "--email", "admin@example.com"}, cfg...)...); err != nil {
			t.Fatal(err)
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		s.post("/auth/login/", map[string]string{"email": "admin@example.com", "password": "Adm1n-Passw0rd-long"}).expect(t, 401)
		if _, err := runCLI(t, "", append([]string{"enable", "--email", "admin@example.com"}, cfg...)...); err != nil {
			t.Fatal(err)
		}
		s.post("/auth/login/", map[string]string{"email": "admin@example.com", "password": "Adm1n-Passw0rd-long"}).expect(t, 200)
	})
}

// Without --config and without a Caddyfile in the current directory the
// commands refuse instead of opening a store the server may not use, and
// an unknown subcommand is an error.
func TestUserCommandsNeedAConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	out, err := runCLI(t, "", "list-users")
	if err == nil || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("list-users without a config: err %v, output %q", err, out)
	}
	entries, _ := os.ReadDir(os.Getenv("XDG_DATA_HOME"))
	if len(entries) != 0 {
		t.Fatalf("list-users without a config wrote %v into the data directory", entries)
	}
	if _, err := runCLI(t, "", "frobnicate"); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("an unknown subcommand: %v", err)
	}
	if out, err := runCLI(t, ""); err != nil || !strings.Contains(out, "list-users") {
		t.Fatalf("the bare command prints its help: %v %q", err, out)
	}
}
