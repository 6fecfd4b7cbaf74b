package passkey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/descope/virtualwebauthn"
	"github.com/go-webauthn/webauthn/protocol/webauthncbor"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/softkey"
)

const (
	testRPID   = "example.com"
	testOrigin = "https://auth.example.com"
)

func newRP(t *testing.T) *RP {
	t.Helper()
	rp, err := New(Config{RPID: testRPID, RPName: "Example", Origins: []string{testOrigin}})
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

func challenge(t *testing.T) []byte {
	t.Helper()
	c := make([]byte, 32)
	if _, err := rand.Read(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// browser is the relying party as the software authenticator sees it:
// the page's origin and the RP ID it hashes.
var browser = virtualwebauthn.RelyingParty{ID: testRPID, Name: "Example", Origin: testOrigin}

// device is one software authenticator holding one key for a user.
type device struct {
	auth virtualwebauthn.Authenticator
	key  virtualwebauthn.Credential
}

func newDevice(t *testing.T, handle []byte, opts virtualwebauthn.AuthenticatorOptions) *device {
	// softkey.Credential, not virtualwebauthn.NewCredential: the latter's
	// keys fail to register about once in 64 (softkey.go says why).
	opts.UserHandle = handle
	d := &device{auth: virtualwebauthn.NewAuthenticatorWithOptions(opts), key: softkey.Credential(t)}
	d.auth.AddCredential(d.key)
	return d
}

// register runs a registration of d for u through rp as a browser would:
// the options go to the authenticator, its attestation comes back.
func register(t *testing.T, rp *RP, u User, d *device, discoverable bool) Credential {
	t.Helper()
	ch := challenge(t)
	resp := d.attest(t, rp, u, ch, browser, discoverable)
	c, err := rp.VerifyRegistration(u, ch, resp)
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return c
}

func (d *device) attest(t *testing.T, rp *RP, u User, ch []byte, as virtualwebauthn.RelyingParty, discoverable bool) []byte {
	t.Helper()
	opts, err := rp.RegistrationOptions(u, ch, discoverable)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := virtualwebauthn.ParseAttestationOptions(string(opts))
	if err != nil {
		t.Fatalf("authenticator reads %s: %v", opts, err)
	}
	return []byte(virtualwebauthn.CreateAttestationResponse(as, d.auth, d.key, *parsed))
}

// assert signs the assertion options of rp for allowed and ch with d's
// key at the given counter, as the page at as.Origin.
func (d *device) assert(t *testing.T, rp *RP, allowed []Credential, ch []byte, counter uint32, as virtualwebauthn.RelyingParty) []byte {
	t.Helper()
	opts, err := rp.AssertionOptions(allowed, ch, false)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := virtualwebauthn.ParseAssertionOptions(string(opts))
	if err != nil {
		t.Fatalf("authenticator reads %s: %v", opts, err)
	}
	key := d.key
	key.Counter = counter
	return []byte(virtualwebauthn.CreateAssertionResponse(as, d.auth, key, *parsed))
}

func alice() User {
	return User{Handle: []byte("handle-of-alice-0123456789abcdef"), Name: "alice@example.com", DisplayName: "Alice"}
}

func bob() User {
	return User{Handle: []byte("handle-of-bob-0123456789abcdef01"), Name: "bob@example.com", DisplayName: "Bob"}
}

// options decodes the inner object of the options JSON.
func options(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var outer map[string]map[string]any
	if err := json.Unmarshal(raw, &outer); err != nil {
		t.Fatalf("options %s: %v", raw, err)
	}
	inner, ok := outer["publicKey"]
	if !ok || len(outer) != 1 {
		t.Fatalf("options %s: want only publicKey", raw)
	}
	return inner
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestRegisterThenAssert(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{BackupEligible: true, BackupState: true})
	c := register(t, rp, u, d, false)
	if !bytes.Equal(c.ID, d.key.ID) || len(c.PublicKey) == 0 || !bytes.Equal(c.AAGUID, d.auth.Aaguid[:]) {
		t.Fatalf("registered %+v, want the key %x of authenticator %x", c, d.key.ID, d.auth.Aaguid)
	}
	if c.SignCount != 0 || !c.UserVerified || !c.BackupEligible || !c.BackupState || c.AttestationType != "basic_surrogate" {
		t.Fatalf("registered %+v", c)
	}
	u.Credentials = []Credential{c}

	ch := challenge(t)
	resp := d.assert(t, rp, u.Credentials, ch, 7, browser)
	got, err := ChallengeOf(resp)
	if err != nil || !bytes.Equal(got, ch) {
		t.Fatalf("ChallengeOf = %x, %v; want %x", got, err, ch)
	}
	id, handle, err := AssertionIDs(resp)
	if err != nil || !bytes.Equal(id, c.ID) || !bytes.Equal(handle, u.Handle) {
		t.Fatalf("AssertionIDs = %x, %q, %v", id, handle, err)
	}
	used, err := rp.VerifyAssertion(u, ch, resp, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(used.ID, c.ID) || used.SignCount != 7 || !used.UserVerified || !used.BackupState {
		t.Fatalf("used %+v, want counter 7", used)
	}
}

func TestRegistrationOptions(t *testing.T) {
	rp := newRP(t)
	u := alice()
	u.Credentials = []Credential{{ID: []byte("credential-one"), Transports: []string{"usb", "nfc"}}, {ID: []byte("credential-two")}}
	ch := challenge(t)
	for _, discoverable := range []bool{true, false} {
		raw, err := rp.RegistrationOptions(u, ch, discoverable)
		if err != nil {
			t.Fatal(err)
		}
		o := options(t, raw)
		if o["challenge"] != b64(ch) || o["attestation"] != "none" || o["timeout"] != float64(DefaultTimeout.Milliseconds()) {
			t.Errorf("options %s", raw)
		}
		if rp, _ := o["rp"].(map[string]any); rp["id"] != testRPID || rp["name"] != "Example" {
			t.Errorf("rp %v", o["rp"])
		}
		if user, _ := o["user"].(map[string]any); user["id"] != b64(u.Handle) || user["name"] != u.Name || user["displayName"] != u.DisplayName {
			t.Errorf("user %v", o["user"])
		}
		sel, _ := o["authenticatorSelection"].(map[string]any)
		want := map[bool]string{true: "required", false: "preferred"}[discoverable]
		if sel["residentKey"] != want || sel["requireResidentKey"] != discoverable || sel["userVerification"] != "preferred" {
			t.Errorf("discoverable=%v: selection %v", discoverable, sel)
		}
		excl, _ := o["excludeCredentials"].([]any)
		if len(excl) != 2 {
			t.Fatalf("excludeCredentials %v", o["excludeCredentials"])
		}
		first, _ := excl[0].(map[string]any)
		if first["id"] != b64([]byte("credential-one")) || first["type"] != "public-key" || len(first["transports"].([]any)) != 2 {
			t.Errorf("excluded %v", first)
		}
		if params, _ := o["pubKeyCredParams"].([]any); len(params) == 0 {
			t.Errorf("no key algorithms in %s", raw)
		}
	}
}

func TestAssertionOptions(t *testing.T) {
	rp := newRP(t)
	ch := challenge(t)
	raw, err := rp.AssertionOptions(nil, ch, false)
	if err != nil {
		t.Fatal(err)
	}
	o := options(t, raw)
	if _, ok := o["allowCredentials"]; ok || o["userVerification"] != "preferred" || o["rpId"] != testRPID || o["challenge"] != b64(ch) {
		t.Errorf("discoverable options %s", raw)
	}
	raw, err = rp.AssertionOptions([]Credential{{ID: []byte("credential-one"), Transports: []string{"internal"}}}, ch, true)
	if err != nil {
		t.Fatal(err)
	}
	o = options(t, raw)
	allow, _ := o["allowCredentials"].([]any)
	if len(allow) != 1 || o["userVerification"] != "required" {
		t.Fatalf("options %s", raw)
	}
	if c, _ := allow[0].(map[string]any); c["id"] != b64([]byte("credential-one")) || c["transports"].([]any)[0] != "internal" {
		t.Errorf("allowed %v", c)
	}
	if _, err := rp.AssertionOptions(nil, ch[:15], false); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("a 15-byte challenge: %v", err)
	}
}

func TestDiscoverable(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})
	u.Credentials = []Credential{register(t, rp, u, d, true)}

	ch := challenge(t)
	resp := d.assert(t, rp, nil, ch, 1, browser)
	id, handle, err := AssertionIDs(resp)
	if err != nil || !bytes.Equal(id, d.key.ID) || !bytes.Equal(handle, u.Handle) {
		t.Fatalf("AssertionIDs = %x, %q, %v", id, handle, err)
	}
	if _, err := rp.VerifyAssertion(u, ch, resp, true); err != nil {
		t.Fatal(err)
	}
}

func TestRefusedAssertions(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})
	u.Credentials = []Credential{register(t, rp, u, d, true)}

	other := bob()
	od := newDevice(t, other.Handle, virtualwebauthn.AuthenticatorOptions{})
	other.Credentials = []Credential{register(t, rp, other, od, true)}

	evil := browser
	evil.Origin = "https://evil.example.net"
	sibling := browser
	sibling.Origin = "https://other.example.com" // the RP ID's, but not configured
	wrongRP := browser
	wrongRP.ID = "example.net"

	ch := challenge(t)
	tests := []struct {
		name string
		resp []byte
		u    User
	}{
		{"wrong origin", d.assert(t, rp, nil, ch, 1, evil), u},
		{"origin not configured", d.assert(t, rp, nil, ch, 1, sibling), u},
		{"wrong RP ID", d.assert(t, rp, nil, ch, 1, wrongRP), u},
		{"wrong challenge", d.assert(t, rp, nil, challenge(t), 1, browser), u},
		{"bad signature", tamper(t, d.assert(t, rp, nil, ch, 1, browser), "signature"), u},
		{"authenticator data changed", tamper(t, d.assert(t, rp, nil, ch, 1, browser), "authenticatorData"), u},
		{"another user's credential", od.assert(t, rp, nil, ch, 1, browser), u},
		{"own credential, another user's handle", (&device{auth: od.auth, key: d.key}).assert(t, rp, nil, ch, 1, browser), u},
		{"a registration", d.attest(t, rp, u, ch, browser, true), u},
		{"no user present", newDeviceFor(d, virtualwebauthn.AuthenticatorOptions{UserNotPresent: true}).assert(t, rp, nil, ch, 1, browser), u},
		{"backup eligibility changed", newDeviceFor(d, virtualwebauthn.AuthenticatorOptions{BackupEligible: true}).assert(t, rp, nil, ch, 1, browser), u},
	}
	for _, tt := range tests {
		if _, err := rp.VerifyAssertion(tt.u, ch, tt.resp, false); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
	// The same device, untouched, passes: the refusals above are the
	// changes'.
	if _, err := rp.VerifyAssertion(u, ch, d.assert(t, rp, nil, ch, 1, browser), false); err != nil {
		t.Fatal(err)
	}
}

// newDeviceFor is d's key in an authenticator with other options.
func newDeviceFor(d *device, opts virtualwebauthn.AuthenticatorOptions) *device {
	opts.UserHandle = d.auth.Options.UserHandle
	auth := virtualwebauthn.NewAuthenticatorWithOptions(opts)
	auth.Aaguid = d.auth.Aaguid
	return &device{auth: auth, key: d.key}
}

// tamper flips a bit in the field of the response's response object.
func tamper(t *testing.T, resp []byte, field string) []byte {
	t.Helper()
	var msg map[string]any
	if err := json.Unmarshal(resp, &msg); err != nil {
		t.Fatal(err)
	}
	inner := msg["response"].(map[string]any)
	raw, err := base64.RawURLEncoding.DecodeString(inner[field].(string))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1
	inner[field] = b64(raw)
	out, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestUserVerification(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{UserNotVerified: true})
	c := register(t, rp, u, d, false)
	if c.UserVerified {
		t.Fatalf("registered %+v without user verification", c)
	}
	u.Credentials = []Credential{c}
	ch := challenge(t)
	if _, err := rp.VerifyAssertion(u, ch, d.assert(t, rp, u.Credentials, ch, 1, browser), true); !errors.Is(err, ErrUserVerification) {
		t.Fatalf("required and missing: %v", err)
	}
	used, err := rp.VerifyAssertion(u, ch, d.assert(t, rp, u.Credentials, ch, 1, browser), false)
	if err != nil || used.UserVerified {
		t.Fatalf("preferred and missing: %+v, %v", used, err)
	}
	// A user-verified assertion of the same credential says so.
	used, err = rp.VerifyAssertion(u, ch, newDeviceFor(d, virtualwebauthn.AuthenticatorOptions{}).assert(t, rp, u.Credentials, ch, 2, browser), true)
	if err != nil || !used.UserVerified {
		t.Fatalf("verified: %+v, %v", used, err)
	}
	// A bad signature without verification is invalid, not unverified.
	resp := tamper(t, d.assert(t, rp, u.Credentials, ch, 3, browser), "signature")
	if _, err := rp.VerifyAssertion(u, ch, resp, true); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad signature, no verification: %v", err)
	}
}

func TestCounter(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})
	u.Credentials = []Credential{register(t, rp, u, d, false)}

	step := func(counter uint32) (Credential, error) {
		ch := challenge(t)
		return rp.VerifyAssertion(u, ch, d.assert(t, rp, u.Credentials, ch, counter, browser), false)
	}
	// An authenticator without a counter sends zero every time.
	for range 2 {
		if c, err := step(0); err != nil || c.SignCount != 0 {
			t.Fatalf("zero after zero: %+v, %v", c, err)
		}
	}
	c, err := step(5)
	if err != nil || c.SignCount != 5 {
		t.Fatalf("5 after 0: %+v, %v", c, err)
	}
	u.Credentials[0].SignCount = c.SignCount
	for _, n := range []uint32{5, 3, 0} {
		c, err := step(n)
		if !errors.Is(err, ErrCounter) {
			t.Fatalf("%d after 5: %v, want ErrCounter", n, err)
		}
		if !bytes.Equal(c.ID, d.key.ID) || c.SignCount != 5 {
			t.Fatalf("%d after 5: returned %+v, want the credential at 5", n, c)
		}
	}
	if c, err := step(6); err != nil || c.SignCount != 6 {
		t.Fatalf("6 after 5: %+v, %v", c, err)
	}
}

func TestReplay(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})

	first := challenge(t)
	att := d.attest(t, rp, u, first, browser, true)
	c, err := rp.VerifyRegistration(u, first, att)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.VerifyRegistration(u, challenge(t), att); !errors.Is(err, ErrInvalid) {
		t.Errorf("attestation against a new challenge: %v", err)
	}
	u.Credentials = []Credential{c}
	if _, err := rp.VerifyRegistration(u, first, att); !errors.Is(err, ErrInvalid) {
		t.Errorf("the same credential registered twice: %v", err)
	}

	ch := challenge(t)
	resp := d.assert(t, rp, nil, ch, 1, browser)
	if _, err := rp.VerifyAssertion(u, ch, resp, false); err != nil {
		t.Fatal(err)
	}
	if _, err := rp.VerifyAssertion(u, challenge(t), resp, false); !errors.Is(err, ErrInvalid) {
		t.Errorf("assertion against a new challenge: %v", err)
	}
}

func TestRefusedRegistrations(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})
	ch := challenge(t)
	evil := browser
	evil.Origin = "https://evil.example.net"
	wrongRP := browser
	wrongRP.ID = "example.net"
	absent := newDeviceFor(d, virtualwebauthn.AuthenticatorOptions{UserNotPresent: true})

	noneFormat := rewriteAttestation(t, d.attest(t, rp, u, ch, browser, true), func(obj map[string]any) { obj["fmt"] = "none" })
	otherFormat := rewriteAttestation(t, d.attest(t, rp, u, ch, browser, true), func(obj map[string]any) { obj["fmt"] = "tpm" })
	tests := []struct {
		name string
		resp []byte
	}{
		{"wrong origin", d.attest(t, rp, u, ch, evil, true)},
		{"wrong RP ID", d.attest(t, rp, u, ch, wrongRP, true)},
		{"wrong challenge", d.attest(t, rp, u, challenge(t), browser, true)},
		{"no user present", absent.attest(t, rp, u, ch, browser, true)},
		{"an assertion", d.assert(t, rp, nil, ch, 1, browser)},
		{"format none with a statement", noneFormat},
		{"format tpm", otherFormat},
	}
	for _, tt := range tests {
		if _, err := rp.VerifyRegistration(u, ch, tt.resp); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.name, err)
		}
	}
	// Format none with no statement, what browsers send for attestation
	// "none", is taken.
	bare := rewriteAttestation(t, d.attest(t, rp, u, ch, browser, true), func(obj map[string]any) {
		obj["fmt"] = "none"
		obj["attStmt"] = map[string]any{}
	})
	c, err := rp.VerifyRegistration(u, ch, bare)
	if err != nil || c.AttestationType != "none" {
		t.Fatalf("format none: %+v, %v", c, err)
	}
}

// rewriteAttestation edits the CBOR attestation object of an attestation
// response.
func rewriteAttestation(t *testing.T, resp []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var msg map[string]any
	if err := json.Unmarshal(resp, &msg); err != nil {
		t.Fatal(err)
	}
	inner := msg["response"].(map[string]any)
	raw, err := base64.RawURLEncoding.DecodeString(inner["attestationObject"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := webauthncbor.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	edit(obj)
	if raw, err = webauthncbor.Marshal(obj); err != nil {
		t.Fatal(err)
	}
	inner["attestationObject"] = b64(raw)
	out, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMalformed(t *testing.T) {
	rp := newRP(t)
	u := alice()
	u.Credentials = []Credential{{ID: []byte("credential-one"), PublicKey: []byte{1}}}
	ch := challenge(t)
	inputs := []string{
		"", "{", "null", "[]", `"x"`, `{}`, `{"id":"x"}`,
		`{"id":"Y3JlZGVudGlhbC1vbmU","rawId":"Y3JlZGVudGlhbC1vbmU","type":"public-key","response":{}}`,
		`{"id":"Y3JlZGVudGlhbC1vbmU","rawId":"Y3JlZGVudGlhbC1vbmU","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA"}}`,
		`{"response":{"clientDataJSON":"bm90IGpzb24"}}`,
		`{"response":{"clientDataJSON":"eyJjaGFsbGVuZ2UiOiIhISEifQ"}}`,
		`{"response":{"clientDataJSON":"e30"}}`,
	}
	for _, in := range inputs {
		if _, err := rp.VerifyAssertion(u, ch, []byte(in), false); !errors.Is(err, ErrInvalid) {
			t.Errorf("VerifyAssertion(%s): %v", in, err)
		}
		if _, err := rp.VerifyRegistration(u, ch, []byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("VerifyRegistration(%s): %v", in, err)
		}
		if _, err := ChallengeOf([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("ChallengeOf(%s): %v", in, err)
		}
		if _, _, err := AssertionIDs([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("AssertionIDs(%s): %v", in, err)
		}
	}
}

func TestChallengeOfRegistration(t *testing.T) {
	rp := newRP(t)
	u := alice()
	ch := challenge(t)
	got, err := ChallengeOf(newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{}).attest(t, rp, u, ch, browser, false))
	if err != nil || !bytes.Equal(got, ch) {
		t.Fatalf("ChallengeOf = %x, %v; want %x", got, err, ch)
	}
}

func TestNew(t *testing.T) {
	good := []Config{
		{RPID: "localhost", Origins: []string{"http://localhost:8080"}},
		{RPID: "Example.COM", Origins: []string{"https://EXAMPLE.com/", "https://auth.example.com:8443", "https://x.y.example.com"}},
		{RPID: "localhost", Origins: []string{"http://app.localhost:3000", "https://localhost"}, Timeout: time.Minute},
	}
	for _, cfg := range good {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
	bad := []Config{
		{RPID: "", Origins: []string{"https://example.com"}},
		{RPID: "127.0.0.1", Origins: []string{"https://127.0.0.1"}},
		{RPID: "[::1]", Origins: []string{"https://[::1]"}},
		{RPID: "example.com:443", Origins: []string{"https://example.com"}},
		{RPID: "https://example.com", Origins: []string{"https://example.com"}},
		{RPID: "exa mple.com", Origins: []string{"https://example.com"}},
		{RPID: "example..com", Origins: []string{"https://example.com"}},
		{RPID: "-example.com", Origins: []string{"https://example.com"}},
		{RPID: "example.com"},
		{RPID: "example.com", Origins: []string{"http://example.com"}},
		{RPID: "example.com", Origins: []string{"https://evil.com"}},
		{RPID: "example.com", Origins: []string{"https://notexample.com"}},
		{RPID: "auth.example.com", Origins: []string{"https://example.com"}},
		{RPID: "example.com", Origins: []string{"example.com"}},
		{RPID: "example.com", Origins: []string{"https://example.com/login"}},
		{RPID: "example.com", Origins: []string{"https://example.com?x"}},
		{RPID: "example.com", Origins: []string{"https://user@example.com"}},
		{RPID: "example.com", Origins: []string{"ftp://example.com"}},
		{RPID: "example.com", Origins: []string{"https://example.com"}, Timeout: -time.Second},
	}
	for _, cfg := range bad {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestOptionsOfConfig: the timeout and the default RP name reach the
// options, and a user handle WebAuthn does not allow is refused.
func TestOptionsOfConfig(t *testing.T) {
	rp, err := New(Config{RPID: "localhost", Origins: []string{"http://localhost:2019"}, Timeout: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rp.RegistrationOptions(alice(), challenge(t), true)
	if err != nil {
		t.Fatal(err)
	}
	o := options(t, raw)
	if o["timeout"] != float64(90000) || o["rp"].(map[string]any)["name"] != "localhost" {
		t.Errorf("options %s", raw)
	}
	raw, err = rp.AssertionOptions(nil, challenge(t), false)
	if err != nil {
		t.Fatal(err)
	}
	if o := options(t, raw); o["timeout"] != float64(90000) || o["rpId"] != "localhost" {
		t.Errorf("options %s", raw)
	}
	for _, h := range [][]byte{nil, bytes.Repeat([]byte{1}, 65)} {
		u := alice()
		u.Handle = h
		if _, err := rp.RegistrationOptions(u, challenge(t), true); err == nil {
			t.Errorf("a user handle of %d bytes accepted", len(h))
		}
	}
}

func FuzzPeek(f *testing.F) {
	f.Add([]byte(`{"id":"AA","rawId":"AA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AA","signature":"AA","userHandle":"AA"}}`))
	f.Add([]byte(`{"response":{"clientDataJSON":"eyJjaGFsbGVuZ2UiOiJBQUFBIn0"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		if _, err := ChallengeOf(in); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("ChallengeOf: %v", err)
		}
		if _, _, err := AssertionIDs(in); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("AssertionIDs: %v", err)
		}
	})
}

// attester is an attestation key with a self-signed certificate of the
// form packed attestation asks for, trusted by no root.
type attester struct {
	key  *ecdsa.PrivateKey
	cert []byte
}

func newAttester(t *testing.T) attester {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject: pkix.Name{Country: []string{"DE"}, Organization: []string{"Test Maker"},
			OrganizationalUnit: []string{"Authenticator Attestation"}, CommonName: "Test Attestation"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return attester{key: key, cert: der}
}

func (a attester) sign(t *testing.T, data ...[]byte) []byte {
	t.Helper()
	sum := sha256.Sum256(bytes.Join(data, nil))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestAttestationFormats: packed with a certificate chain is taken without
// a root to check it against; fido-u2f, valid as it is, is not one of the
// formats taken.
func TestAttestationFormats(t *testing.T) {
	rp := newRP(t)
	u := alice()
	d := newDevice(t, u.Handle, virtualwebauthn.AuthenticatorOptions{})
	a := newAttester(t)
	ch := challenge(t)

	// restate replaces the attestation statement of a fresh response,
	// signed over its authenticator data and client data.
	restate := func(format string, statement func(authData, clientDataHash []byte) map[string]any) []byte {
		resp := d.attest(t, rp, u, ch, browser, true)
		var msg struct {
			Response struct {
				ClientDataJSON string `json:"clientDataJSON"`
			} `json:"response"`
		}
		if err := json.Unmarshal(resp, &msg); err != nil {
			t.Fatal(err)
		}
		clientData, err := base64.RawURLEncoding.DecodeString(msg.Response.ClientDataJSON)
		if err != nil {
			t.Fatal(err)
		}
		cdh := sha256.Sum256(clientData)
		return rewriteAttestation(t, resp, func(obj map[string]any) {
			obj["fmt"] = format
			obj["attStmt"] = statement(obj["authData"].([]byte), cdh[:])
		})
	}

	basic := restate("packed", func(authData, cdh []byte) map[string]any {
		return map[string]any{"alg": -7, "sig": a.sign(t, authData, cdh), "x5c": []any{a.cert}}
	})
	c, err := rp.VerifyRegistration(u, ch, basic)
	if err != nil || c.AttestationType != "basic_full" {
		t.Fatalf("packed with a certificate: %+v, %v", c, err)
	}
	// The certificate's key must have signed the very data.
	forged := restate("packed", func(authData, cdh []byte) map[string]any {
		return map[string]any{"alg": -7, "sig": a.sign(t, authData, cdh, []byte{0}), "x5c": []any{a.cert}}
	})
	if _, err := rp.VerifyRegistration(u, ch, forged); !errors.Is(err, ErrInvalid) {
		t.Fatalf("packed, signed over other data: %v", err)
	}

	u2f := restate("fido-u2f", func(authData, cdh []byte) map[string]any {
		rpIDHash := authData[:32]
		idLen := int(authData[53])<<8 | int(authData[54])
		credID := authData[55 : 55+idLen]
		var cose map[int]any
		if err := webauthncbor.Unmarshal(authData[55+idLen:], &cose); err != nil {
			t.Fatal(err)
		}
		point := slices.Concat([]byte{4}, cose[-2].([]byte), cose[-3].([]byte))
		return map[string]any{"sig": a.sign(t, []byte{0}, rpIDHash, cdh, credID, point), "x5c": []any{a.cert}}
	})
	if _, err := rp.VerifyRegistration(u, ch, u2f); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "fido-u2f") {
		t.Fatalf("fido-u2f: %v, want refused for its format", err)
	}
}
