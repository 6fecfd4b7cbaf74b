package caddyauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/descope/virtualwebauthn"
)

// The passkey tests' relying party: the RP ID localhost, the origin of a
// page at it. The requests go to the test site as any client's do; the
// software authenticator signs for that origin.
const passkeyOptions = "passkeys passwordless\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443\n\t\tmfa_totp_mode optional"

var passkeyPage = virtualwebauthn.RelyingParty{ID: "localhost", Name: "localhost", Origin: "http://localhost:8443"}

// softKey is one software authenticator holding one passkey.
type softKey struct {
	t    *testing.T
	auth virtualwebauthn.Authenticator
	key  virtualwebauthn.Credential
	uses uint32
}

func newSoftKey(t *testing.T) *softKey {
	a := &softKey{t: t, auth: virtualwebauthn.NewAuthenticatorWithOptions(virtualwebauthn.AuthenticatorOptions{}),
		key: virtualwebauthn.NewCredential(virtualwebauthn.KeyTypeEC2)}
	return a
}

// options are a ceremony's options as the site answered them.
func (a *softKey) options(r reply) string {
	a.t.Helper()
	b, err := json.Marshal(r.body["publicKey"])
	if err != nil || r.body["publicKey"] == nil {
		a.t.Fatalf("no options: %s", r.raw)
	}
	return string(b)
}

// attest answers registration options, taking the user handle they name.
func (a *softKey) attest(r reply) map[string]any {
	a.t.Helper()
	opts, err := virtualwebauthn.ParseAttestationOptions(a.options(r))
	if err != nil {
		a.t.Fatalf("the authenticator reads the options: %v", err)
	}
	// The options' user id, decoded: the handle the site gave the account.
	a.auth.Options.UserHandle = []byte(opts.UserID)
	a.auth.AddCredential(a.key)
	return a.credential(virtualwebauthn.CreateAttestationResponse(passkeyPage, a.auth, a.key, *opts))
}

// assertion answers request options with the next counter value.
func (a *softKey) assertion(r reply) map[string]any {
	a.t.Helper()
	opts, err := virtualwebauthn.ParseAssertionOptions(a.options(r))
	if err != nil {
		a.t.Fatalf("the authenticator reads the options: %v", err)
	}
	a.uses++
	key := a.key
	key.Counter = a.uses
	return a.credential(virtualwebauthn.CreateAssertionResponse(passkeyPage, a.auth, key, *opts))
}

func (a *softKey) credential(raw string) map[string]any {
	a.t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		a.t.Fatal(err)
	}
	return v
}

// A passkey registered to a signed-in account signs in without a password
// and answers the login challenge of a password login.
func TestPasskeyRoundTripE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, passkeyOptions, defaultBody))
		u := mustCreateUser(t, "pk@example.com", userPass, 0)
		access, _ := s.login("pk@example.com", userPass)
		dev := newSoftKey(t)

		opts := s.post("/auth/mfa/webauthn/register/begin/", nil, bearer(access)).expect(t, http.StatusOK)
		reg := s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"name": "Laptop", "credential": dev.attest(opts)}, bearer(access)).expect(t, http.StatusCreated)
		if reg.str("name") != "Laptop" || reg.str("type") != "webauthn" || len(reg.body["recovery_codes"].([]any)) == 0 {
			t.Fatalf("registered: %s", reg.raw)
		}

		// Passwordless.
		opts = s.post("/auth/passkey/login/begin/", nil).expect(t, http.StatusOK)
		r := s.post("/auth/passkey/login/finish/", map[string]any{"credential": dev.assertion(opts)}).expect(t, http.StatusOK)
		if got := fmt.Sprint(claims(t, r.str("access"))["user_id"]); got != strconv.FormatInt(u.ID, 10) {
			t.Fatalf("signed in as %v, want %d", got, u.ID)
		}
		// The same answer again: its ceremony is spent.
		s.post("/auth/passkey/login/finish/", map[string]any{"credential": dev.assertion(opts)}).expect(t, http.StatusBadRequest)

		// The second factor of a password login.
		step := s.post("/auth/login/", map[string]string{"email": "pk@example.com", "password": userPass}).expect(t, http.StatusOK)
		methods, _ := step.body["methods"].([]any)
		if step.body["mfa_required"] != true || !slices.Contains(methods, any("webauthn")) {
			t.Fatalf("login of an account with a passkey: %s", step.raw)
		}
		ch := step.str("challenge_id")
		opts = s.post("/auth/mfa/webauthn/begin/", map[string]string{"challenge_id": ch}).expect(t, http.StatusOK)
		r = s.post("/auth/mfa/webauthn/verify/", map[string]any{"challenge_id": ch, "credential": dev.assertion(opts)}).expect(t, http.StatusOK)
		if r.str("access") == "" {
			t.Fatalf("verify: %s", r.raw)
		}
		auths := s.get("/auth/mfa/authenticators/", bearer(r.str("access"))).expect(t, http.StatusOK)
		if !strings.Contains(string(auths.raw), `"type":"webauthn"`) || !strings.Contains(string(auths.raw), `"name":"Laptop"`) {
			t.Fatalf("authenticators: %s", auths.raw)
		}
	})
}


// The command line lists a user's passkeys and removes one; reset-mfa
// removes them all.
func TestPasskeyCommandsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := caddyfile(store, passkeyOptions, defaultBody)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := []string{"--config", path, "--adapter", "caddyfile"}
		s := startCaddy(t, cf)
		mustCreateUser(t, "pk@example.com", userPass, 0)
		access, _ := s.login("pk@example.com", userPass)
		var ids []string
		for _, name := range []string{"Laptop", "Phone"} {
			dev := newSoftKey(t)
			opts := s.post("/auth/mfa/webauthn/register/begin/", nil, bearer(access)).expect(t, http.StatusOK)
			reg := s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"name": name, "credential": dev.attest(opts)}, bearer(access)).expect(t, http.StatusCreated)
			ids = append(ids, fmt.Sprint(reg.body["id"]))
		}
		out, err := runCLI(t, "", append([]string{"list-passkeys", "--email", "pk@example.com"}, cfg...)...)
		if err != nil || !strings.Contains(out, "Laptop") || !strings.Contains(out, "Phone") {
			t.Fatalf("list-passkeys: %v\n%s", err, out)
		}
		if out, err := runCLI(t, "", append([]string{"remove-passkey", "--email", "pk@example.com", "--id", ids[0]}, cfg...)...); err != nil || !strings.Contains(out, "removed") {
			t.Fatalf("remove-passkey: %v\n%s", err, out)
		}
		if _, err := runCLI(t, "", append([]string{"remove-passkey", "--email", "pk@example.com", "--id", ids[0]}, cfg...)...); err == nil || !strings.Contains(err.Error(), "has no passkey") {
			t.Fatalf("removing a passkey twice: %v", err)
		}
		out, err = runCLI(t, "", append([]string{"list-users"}, cfg...)...)
		if err != nil || !strings.Contains(out, "PASSKEYS") {
			t.Fatalf("list-users: %v\n%s", err, out)
		}
		if _, err := runCLI(t, "", append([]string{"reset-mfa", "--email", "pk@example.com"}, cfg...)...); err != nil {
			t.Fatal(err)
		}
		out, err = runCLI(t, "", append([]string{"list-passkeys", "--email", "pk@example.com"}, cfg...)...)
		if err != nil || strings.Contains(out, "Phone") {
			t.Fatalf("passkeys after reset-mfa: %v\n%s", err, out)
		}
		// Without a passkey the login needs no second step.
		s.post("/auth/login/", map[string]string{"email": "pk@example.com", "password": userPass}).expect(t, http.StatusOK).session(t, false)
	})
}
