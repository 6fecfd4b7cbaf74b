package caddyauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/softkey"
)

// The passkey tests' relying party: the RP ID localhost, the origin of a
// page at it. The requests go to the test site as any client's do; the
// software authenticator signs for that origin.
const passkeyOptions = "passkeys passwordless\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443\n\t\tmfa_totp_mode optional"

var passkeyPage = virtualwebauthn.RelyingParty{ID: "localhost", Name: "localhost", Origin: "http://localhost:8443"}

// Messages of the passkey endpoints.
const (
	pkInvalid  = "The passkey could not be verified."
	pkNoUV     = "The passkey did not verify you (PIN or biometrics required)."
	pkCeremony = "This passkey request is unknown or has expired: start again."
)

func newSoftKey(t *testing.T) *softkey.Key { return softkey.New(t, passkeyPage) }

// cred is an authenticator's answer as the body's `credential`.
func cred(answer []byte) json.RawMessage { return json.RawMessage(answer) }

// registerPasskey registers a new software passkey to the bearer of
// access.
func (s *site) registerPasskey(access, name string) *softkey.Key {
	s.t.Helper()
	dev := newSoftKey(s.t)
	opts := s.post("/auth/mfa/webauthn/register/begin/", nil, bearer(access)).expect(s.t, http.StatusOK)
	s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"name": name, "credential": cred(dev.Attest(s.t, opts.raw))}, bearer(access)).expect(s.t, http.StatusCreated)
	return dev
}

// passkeyChallenge logs in with the password an account with a passkey
// and returns the login challenge, which names webauthn.
func (s *site) passkeyChallenge(email string) string {
	s.t.Helper()
	step := s.post("/auth/login/", map[string]string{"email": email, "password": userPass}).expect(s.t, http.StatusOK).noSession(s.t)
	methods, _ := step.body["methods"].([]any)
	if step.body["mfa_required"] != true || !slices.Contains(methods, any("webauthn")) {
		s.t.Fatalf("login of an account with a passkey: %s", step.raw)
	}
	return step.str("challenge_id")
}

// secondFactorOptions begins a passkey answer to the login challenge ch.
func (s *site) secondFactorOptions(ch string) []byte {
	s.t.Helper()
	return s.post("/auth/mfa/webauthn/begin/", map[string]string{"challenge_id": ch}).expect(s.t, http.StatusOK).raw
}

// loginOptions begins a passwordless sign-in.
func (s *site) loginOptions() []byte {
	s.t.Helper()
	return s.post("/auth/passkey/login/begin/", nil).expect(s.t, http.StatusOK).raw
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
		reg := s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"name": "Laptop", "credential": cred(dev.Attest(t, opts.raw))}, bearer(access)).expect(t, http.StatusCreated)
		if reg.str("name") != "Laptop" || reg.str("type") != "webauthn" || len(reg.body["recovery_codes"].([]any)) == 0 {
			t.Fatalf("registered: %s", reg.raw)
		}

		// Passwordless.
		login := s.loginOptions()
		answer := dev.Assert(t, login)
		r := s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(answer)}).expect(t, http.StatusOK)
		if got := fmt.Sprint(claims(t, r.str("access"))["user_id"]); got != strconv.FormatInt(u.ID, 10) {
			t.Fatalf("signed in as %v, want %d", got, u.ID)
		}
		// The same answer again: its ceremony is spent.
		s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(answer)}).detail(t, http.StatusBadRequest, pkCeremony).noSession(t)

		// The second factor of a password login.
		ch := s.passkeyChallenge("pk@example.com")
		r = s.post("/auth/mfa/webauthn/verify/", map[string]any{"challenge_id": ch, "credential": cred(dev.Assert(t, s.secondFactorOptions(ch)))}).expect(t, http.StatusOK)
		if r.str("access") == "" {
			t.Fatalf("verify: %s", r.raw)
		}
		auths := s.get("/auth/mfa/authenticators/", bearer(r.str("access"))).expect(t, http.StatusOK)
		if !strings.Contains(string(auths.raw), `"type":"webauthn"`) || !strings.Contains(string(auths.raw), `"name":"Laptop"`) {
			t.Fatalf("authenticators: %s", auths.raw)
		}
		if got := metric(t, `caddy_jwt_allauth_mfa_verifications_total{method="webauthn",result="success"}`); got != 1 {
			t.Fatalf("mfa{webauthn,success} %v, want 1", got)
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
			reg := s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"name": name, "credential": cred(dev.Attest(t, opts.raw))}, bearer(access)).expect(t, http.StatusCreated)
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

// What a browser on another page, a careless authenticator or an attacker
// sends is refused, and counted where a second factor is.
func TestPasskeyNegativesE2E(t *testing.T) {
	evilOrigin := virtualwebauthn.RelyingParty{ID: "localhost", Name: "localhost", Origin: "https://evil.example"}
	evilRPID := virtualwebauthn.RelyingParty{ID: "example.com", Name: "example.com", Origin: "http://localhost:8443"}
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, passkeyOptions, defaultBody))
		ada := mustCreateUser(t, "ada@example.com", userPass, 0)
		mustCreateUser(t, "bob@example.com", userPass, 0)
		adaAccess, _ := s.login("ada@example.com", userPass)
		bobAccess, _ := s.login("bob@example.com", userPass)
		bobKey := s.registerPasskey(bobAccess, "Bob's")

		// Registration from another origin or for another RP ID; the
		// failed answer spends its ceremony.
		for _, page := range []virtualwebauthn.RelyingParty{evilOrigin, evilRPID} {
			opts := s.post("/auth/mfa/webauthn/register/begin/", nil, bearer(adaAccess)).expect(t, http.StatusOK)
			s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"credential": cred(softkey.New(t, page).Attest(t, opts.raw))}, bearer(adaAccess)).
				detail(t, http.StatusBadRequest, pkInvalid)
			s.post("/auth/mfa/webauthn/register/finish/", map[string]any{"credential": cred(newSoftKey(t).Attest(t, opts.raw))}, bearer(adaAccess)).
				detail(t, http.StatusBadRequest, pkCeremony)
		}
		dev := s.registerPasskey(adaAccess, "Laptop")

		// Passwordless: another origin, another RP ID, no user
		// verification, an expired ceremony.
		for _, d := range []*softkey.Key{dev.On(evilOrigin), dev.On(evilRPID)} {
			s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(d.Assert(t, s.loginOptions()))}).detail(t, http.StatusUnauthorized, pkInvalid).noSession(t)
		}
		lazy := dev.On(passkeyPage)
		lazy.Auth.Options.UserNotVerified = true
		s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(lazy.Assert(t, s.loginOptions()))}).detail(t, http.StatusUnauthorized, pkNoUV).noSession(t)
		login := s.loginOptions()
		advance(t, 5*time.Minute+time.Second)
		s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(dev.Assert(t, login))}).detail(t, http.StatusBadRequest, pkCeremony).noSession(t)

		// Second factor: another user's passkey, another origin, a forged
		// signature, an expired ceremony: counted failures.
		ch := s.passkeyChallenge("ada@example.com")
		verify := func(answer []byte) reply {
			return s.post("/auth/mfa/webauthn/verify/", map[string]any{"challenge_id": ch, "credential": cred(answer)})
		}
		verify(bobKey.Assert(t, s.secondFactorOptions(ch))).detail(t, http.StatusBadRequest, pkInvalid).noSession(t)
		verify(dev.On(evilOrigin).Assert(t, s.secondFactorOptions(ch))).detail(t, http.StatusBadRequest, pkInvalid).noSession(t)
		verify(dev.Forger(t).Assert(t, s.secondFactorOptions(ch))).detail(t, http.StatusBadRequest, pkInvalid).noSession(t)
		stale := s.secondFactorOptions(ch)
		advance(t, 4*time.Minute)
		ch = s.passkeyChallenge("ada@example.com")
		advance(t, time.Minute+time.Second)
		verify(dev.Assert(t, stale)).detail(t, http.StatusBadRequest, pkInvalid).noSession(t)
		verify(dev.Signed(t, s.secondFactorOptions(ch), 10)).expect(t, http.StatusOK)

		// A counter that goes backwards: refused, the passkey locked.
		ch = s.passkeyChallenge("ada@example.com")
		verify(dev.Signed(t, s.secondFactorOptions(ch), 3)).detail(t, http.StatusBadRequest, pkInvalid).noSession(t)
		keys, err := activeStore(t).Passkeys(context.Background(), ada.ID)
		if err != nil || len(keys) != 1 || !keys[0].Locked || keys[0].SignCount != 10 {
			t.Fatalf("passkeys %+v, %v: want the one locked at 10", keys, err)
		}
		s.post("/auth/mfa/webauthn/begin/", map[string]string{"challenge_id": ch}).detail(t, http.StatusBadRequest, "No passkey is registered for this account.")
		s.post("/auth/passkey/login/finish/", map[string]any{"credential": cred(dev.Signed(t, s.loginOptions(), 99))}).detail(t, http.StatusUnauthorized, pkInvalid).noSession(t)
		auths := s.get("/auth/mfa/authenticators/", bearer(adaAccess)).expect(t, http.StatusOK)
		if !strings.Contains(string(auths.raw), `"locked":true`) {
			t.Fatalf("authenticators: %s", auths.raw)
		}

		for name, want := range map[string]float64{
			`caddy_jwt_allauth_mfa_verifications_total{method="webauthn",result="success"}`: 1,
			`caddy_jwt_allauth_mfa_verifications_total{method="webauthn",result="failure"}`: 5,
			`caddy_jwt_allauth_lockouts_total{kind="passkey"}`:                              1,
		} {
			if got := metric(t, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
	})
}

// passkeys off: no endpoint; second_factor: no passwordless endpoint; a
// default mode without a usable RP ID: off.
func TestPasskeyModesE2E(t *testing.T) {
	all := []string{"/auth/mfa/webauthn/register/begin/", "/auth/mfa/webauthn/register/finish/", "/auth/mfa/webauthn/begin/",
		"/auth/mfa/webauthn/verify/", "/auth/passkey/login/begin/", "/auth/passkey/login/finish/"}
	for name, tc := range map[string]struct {
		options string
		absent  []string
	}{
		"off":                 {"passkeys off\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443\n\t\tmfa_totp_mode optional", all},
		"default on an IP":    {"mfa_totp_mode optional", all},
		"second_factor":       {"passkeys second_factor\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443\n\t\tmfa_totp_mode optional", all[4:]},
		"mfa disabled":        {"passkey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443", all},
		"passwordless no mfa": {"passkeys passwordless\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443", nil},
	} {
		t.Run(name, func(t *testing.T) {
			s := startCaddy(t, caddyfile(backends()[0].store(t), tc.options, defaultBody))
			mustCreateUser(t, "ada@example.com", userPass, 0)
			access, _ := s.login("ada@example.com", userPass)
			for _, path := range all {
				r := s.post(path, map[string]any{}, bearer(access))
				if absent := slices.Contains(tc.absent, path); absent != (r.status == http.StatusNotFound) {
					t.Errorf("POST %s: %d %s (absent: %v)", path, r.status, r.raw, absent)
				}
			}
			if slices.Contains(tc.absent, all[0]) {
				s.req(http.MethodPatch, "/auth/mfa/webauthn/1/", map[string]string{"name": "x"}, bearer(access)).expect(t, http.StatusNotFound)
				s.req(http.MethodDelete, "/auth/mfa/webauthn/1/", nil, bearer(access)).expect(t, http.StatusNotFound)
			}
		})
	}
}

func TestPasskeyStartupRefusalsE2E(t *testing.T) {
	store := backends()[0].store(t)
	for name, tc := range map[string]struct{ options, want string }{
		"an IP as the RP ID":        {"passkeys passwordless\n\t\tpasskey_rp_id 127.0.0.1\n\t\tmfa_totp_mode optional", `passkeys passwordless: passkey RP ID "127.0.0.1": an IP address, not a host name`},
		"asked for on an IP":        {"passkeys second_factor\n\t\tmfa_totp_mode optional", `passkeys second_factor: passkey RP ID "127.0.0.1": an IP address`},
		"an origin off the RP ID":   {"passkeys passwordless\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins https://evil.example", `passkey origin "https://evil.example"`},
		"an RP ID on an IP site":    {"passkey_rp_id localhost\n\t\tmfa_totp_mode optional", `passkey origin "http://127.0.0.1:`},
		"an unknown mode":           {"passkeys sideways", `passkeys: unknown value "sideways" (want one of off, second_factor, passwordless)`},
		"second factor without MFA": {"passkeys second_factor\n\t\tpasskey_rp_id localhost\n\t\tpasskey_origins http://localhost:8443", "passkeys second_factor: needs mfa_totp_mode optional or required"},
	} {
		t.Run(name, func(t *testing.T) {
			refusesToStart(t, caddyfile(store, tc.options, defaultBody), tc.want)
		})
	}
}

// Bodies that are not what the endpoints read are field errors, and
// count as no second factor.
func TestPasskeyBodyErrorsE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), passkeyOptions, defaultBody))
	mustCreateUser(t, "ada@example.com", userPass, 0)
	access, _ := s.login("ada@example.com", userPass)
	s.registerPasskey(access, "Laptop")
	ch := s.passkeyChallenge("ada@example.com")

	field := func(r reply, name, msg string) {
		t.Helper()
		r.expect(t, http.StatusBadRequest).noSession(t)
		if got := r.fieldMsg(name); got != msg || len(r.body) != 1 {
			t.Fatalf("%s: %q, want %q alone; body: %s", name, got, msg, r.raw)
		}
	}
	for _, tc := range []struct {
		path    string
		body    map[string]any
		name    string
		message string
	}{
		{"/auth/mfa/webauthn/register/finish/", map[string]any{"name": "x"}, "credential", "This field is required."},
		{"/auth/mfa/webauthn/register/finish/", map[string]any{"credential": "x"}, "credential", `Expected a dictionary of items but got type "str".`},
		{"/auth/mfa/webauthn/register/finish/", map[string]any{"name": true, "credential": map[string]any{}}, "name", "Not a valid string."},
		{"/auth/mfa/webauthn/verify/", map[string]any{"challenge_id": ch}, "credential", "This field is required."},
		{"/auth/mfa/webauthn/verify/", map[string]any{"challenge_id": ch, "credential": []int{1}}, "credential", `Expected a dictionary of items but got type "list".`},
		{"/auth/mfa/webauthn/verify/", map[string]any{"credential": map[string]any{}}, "challenge_id", "This field is required."},
		{"/auth/mfa/webauthn/begin/", map[string]any{}, "challenge_id", "This field is required."},
		{"/auth/passkey/login/finish/", map[string]any{}, "credential", "This field is required."},
		{"/auth/passkey/login/finish/", map[string]any{"credential": nil}, "credential", "This field may not be null."},
		{"/auth/passkey/login/finish/", map[string]any{"credential": 7}, "credential", `Expected a dictionary of items but got type "int".`},
	} {
		field(s.post(tc.path, tc.body, bearer(access)), tc.name, tc.message)
	}
	s.req(http.MethodPatch, "/auth/mfa/webauthn/1/", map[string]any{}, bearer(access)).expect(t, http.StatusBadRequest)
	s.req(http.MethodPatch, "/auth/mfa/webauthn/x/", map[string]any{"name": "y"}, bearer(access)).expect(t, http.StatusNotFound)
	if got := metric(t, `caddy_jwt_allauth_mfa_verifications_total{method="webauthn",result="failure"}`); got != 0 {
		t.Fatalf("mfa{webauthn,failure} %v after body errors", got)
	}
}

// Rename and delete over HTTP: the owner only; deleting in an old
// session needs the password.
func TestPasskeyManageE2E(t *testing.T) {
	s := startCaddy(t, caddyfile(backends()[0].store(t), passkeyOptions+"\n\t\treauth_window 10m", defaultBody))
	mustCreateUser(t, "ada@example.com", userPass, 0)
	mustCreateUser(t, "bob@example.com", userPass, 0)
	access, _ := s.login("ada@example.com", userPass)
	bobAccess, _ := s.login("bob@example.com", userPass)
	s.registerPasskey(access, "Laptop")
	auths := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, http.StatusOK)
	var id string
	for _, a := range auths.list {
		if m, _ := a.(map[string]any); m["type"] == "webauthn" {
			id = fmt.Sprint(m["id"])
		}
	}
	path := "/auth/mfa/webauthn/" + id + "/"
	s.req(http.MethodPatch, path, map[string]string{"name": "Mine"}, bearer(bobAccess)).detail(t, http.StatusNotFound, "Not found.")
	r := s.req(http.MethodPatch, path, map[string]string{"name": " Work "}, bearer(access)).expect(t, http.StatusOK)
	if r.str("name") != "Work" {
		t.Fatalf("rename: %s", r.raw)
	}
	s.req(http.MethodDelete, path, nil, bearer(bobAccess)).detail(t, http.StatusNotFound, "Not found.")
	advance(t, 10*time.Minute+time.Second)
	s.req(http.MethodDelete, path, nil, bearer(access)).expect(t, http.StatusForbidden)
	s.req(http.MethodDelete, path, map[string]string{"password": userPass}, bearer(access)).expect(t, http.StatusNoContent)
	if auths := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, http.StatusOK); strings.Contains(string(auths.raw), `"webauthn"`) {
		t.Fatalf("authenticators after the deletion: %s", auths.raw)
	}
}

// One answer posted by 20 clients at once: one session, on either store.
func TestPasskeyRaceE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, passkeyOptions, defaultBody))
		mustCreateUser(t, "ada@example.com", userPass, 0)
		access, _ := s.login("ada@example.com", userPass)
		dev := s.registerPasskey(access, "Laptop")

		passwordless := map[string]any{"credential": cred(dev.Assert(t, s.loginOptions()))}
		wantOne(t, "passwordless", raceE2E(t, s, "/auth/passkey/login/finish/", passwordless), http.StatusBadRequest)

		ch := s.passkeyChallenge("ada@example.com")
		second := map[string]any{"challenge_id": ch, "credential": cred(dev.Assert(t, s.secondFactorOptions(ch)))}
		wantOne(t, "second factor", raceE2E(t, s, "/auth/mfa/webauthn/verify/", second), http.StatusBadRequest)
		if got := metric(t, `caddy_jwt_allauth_mfa_verifications_total{method="webauthn",result="failure"}`); got != 0 {
			t.Fatalf("mfa{webauthn,failure} %v: a loser was counted", got)
		}

		opts := s.post("/auth/mfa/webauthn/register/begin/", nil, bearer(access)).expect(t, http.StatusOK)
		bodies := make([]map[string]any, 20)
		for i := range bodies {
			bodies[i] = map[string]any{"credential": cred(newSoftKey(t).Attest(t, opts.raw))}
		}
		replies := raceBodies(t, s, "/auth/mfa/webauthn/register/finish/", bodies, bearer(access))
		won := 0
		for _, r := range replies {
			switch r.status {
			case http.StatusCreated:
				won++
			case http.StatusBadRequest:
			default:
				t.Errorf("registration: %d %s", r.status, r.raw)
			}
		}
		auths := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, http.StatusOK)
		if won != 1 || strings.Count(string(auths.raw), `"type":"webauthn"`) != 2 {
			t.Fatalf("%d registrations on one ceremony; authenticators %s", won, auths.raw)
		}
	})
}

// raceE2E posts body to path from 20 goroutines released together.
func raceE2E(t *testing.T, s *site, path string, body map[string]any) []reply {
	bodies := make([]map[string]any, 20)
	for i := range bodies {
		bodies[i] = body
	}
	return raceBodies(t, s, path, bodies)
}

// raceBodies posts each body to path, all at once.
func raceBodies(t *testing.T, s *site, path string, bodies []map[string]any, headers ...string) []reply {
	t.Helper()
	replies := make([]reply, len(bodies))
	errs := make([]error, len(bodies))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Go(func() {
			<-start
			replies[i], errs[i] = s.try(http.MethodPost, path, bodies[i], headers...)
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return replies
}

// wantOne wants one 200 with a session among replies, every other one
// lost status.
func wantOne(t *testing.T, what string, replies []reply, lost int) {
	t.Helper()
	won := 0
	for _, r := range replies {
		switch {
		case r.status == http.StatusOK && r.str("access") != "":
			won++
		case r.status == lost:
			r.noSession(t)
		default:
			t.Errorf("%s: %d %s", what, r.status, r.raw)
		}
	}
	if won != 1 {
		t.Fatalf("%s: %d sessions, want 1", what, won)
	}
}
