// Package softkey is a software WebAuthn authenticator for tests: one
// passkey, answering a relying party's options (the JSON the core and
// its endpoints write) as a browser's credential.toJSON() would, for the
// page it is told it runs on. Its signatures, counters and flags are the
// test's to choose, so negative cases need no browser.
package softkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"testing"

	"github.com/descope/virtualwebauthn"
)

// Key is an authenticator holding one passkey. Auth.Options set its
// flags (UserNotVerified, …) and the user handle it answers with; Page
// is the origin and RP ID it signs for.
type Key struct {
	Auth virtualwebauthn.Authenticator
	Cred virtualwebauthn.Credential
	Page virtualwebauthn.RelyingParty
}

// New is a new authenticator with a new P-256 passkey, on page.
func New(t testing.TB, page virtualwebauthn.RelyingParty) *Key {
	t.Helper()
	return &Key{Auth: virtualwebauthn.NewAuthenticator(), Cred: Credential(t), Page: page}
}

// Credential is a new P-256 passkey with a random 32-byte id, one the
// relying party accepts (see p256).
func Credential(t testing.TB) virtualwebauthn.Credential {
	t.Helper()
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	return virtualwebauthn.Credential{ID: id, Key: p256(t)}
}

// p256 is a new P-256 key whose coordinates are 32 bytes each: the
// library writes them without their leading zeros, which COSE (and so
// the relying party) rightly refuses, for about one key in 64.
func p256(t testing.TB) *virtualwebauthn.Key {
	t.Helper()
	for {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.X.Bytes()) != 32 || len(k.Y.Bytes()) != 32 {
			continue
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return virtualwebauthn.NewCredentialWithImportedKey(virtualwebauthn.KeyTypeEC2, der).Key
	}
}

// Attest answers creation options, taking the user handle they name.
func (k *Key) Attest(t testing.TB, options []byte) []byte {
	t.Helper()
	opts, err := virtualwebauthn.ParseAttestationOptions(string(options))
	if err != nil {
		t.Fatalf("the authenticator reads the options: %v\n%s", err, options)
	}
	// The options' user id, as the library decodes it.
	k.Auth.Options.UserHandle = []byte(opts.UserID)
	return []byte(virtualwebauthn.CreateAttestationResponse(k.Page, k.Auth, k.Cred, *opts))
}

// Assert answers request options with the next counter value.
func (k *Key) Assert(t testing.TB, options []byte) []byte {
	t.Helper()
	k.Cred.Counter++
	return k.Signed(t, options, k.Cred.Counter)
}

// Signed answers request options with the counter given.
func (k *Key) Signed(t testing.TB, options []byte, counter uint32) []byte {
	t.Helper()
	opts, err := virtualwebauthn.ParseAssertionOptions(string(options))
	if err != nil {
		t.Fatalf("the authenticator reads the options: %v\n%s", err, options)
	}
	cred := k.Cred
	cred.Counter = counter
	return []byte(virtualwebauthn.CreateAssertionResponse(k.Page, k.Auth, cred, *opts))
}

// Forger is an authenticator that names k's credential and user handle
// but signs with another key.
func (k *Key) Forger(t testing.TB) *Key {
	f := *k
	f.Cred = virtualwebauthn.Credential{ID: k.Cred.ID, Key: p256(t)}
	return &f
}

// On is a copy of k that runs on another page (origin, RP ID).
func (k *Key) On(page virtualwebauthn.RelyingParty) *Key {
	c := *k
	c.Page = page
	return &c
}

// CredentialID is the credential's id as options write it.
func (k *Key) CredentialID() string { return base64.RawURLEncoding.EncodeToString(k.Cred.ID) }
