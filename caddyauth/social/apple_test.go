package social

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"
)

// p8 writes key as Apple's .p8 file does (PKCS#8 PEM) and reads it back
// as the adapter will, from the file.
func p8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey_KEY1234567.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppleSecret(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	s, err := NewAppleSecret(AppleConfig{TeamID: "TEAM123456", KeyID: "KEY1234567", ClientID: "com.example.auth",
		Key: p8(t, key), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.Secret()
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("the secret does not verify with the key's public half: %v", err)
	}
	if tok.Header["kid"] != "KEY1234567" || tok.Header["alg"] != "ES256" {
		t.Errorf("header %v", tok.Header)
	}
	want := map[string]any{"iss": "TEAM123456", "sub": "com.example.auth", "aud": AppleIssuer,
		"iat": float64(now.Unix()), "exp": float64(now.Add(time.Hour).Unix())}
	if len(claims) != len(want) {
		t.Errorf("claims %v, want %v", claims, want)
	}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %#v, want %#v", k, claims[k], v)
		}
	}

	// Kept while it has time left; signed anew near its expiry.
	now = now.Add(45 * time.Minute)
	if again, _ := s.Secret(); again != raw {
		t.Error("a secret with 15 minutes left was not reused")
	}
	now = now.Add(10 * time.Minute)
	fresh, err := s.Secret()
	if err != nil || fresh == raw {
		t.Fatalf("a secret with 5 minutes left was reused: %v", err)
	}
	if _, err := jwt.Parse(fresh, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(func() time.Time { return now.Add(59 * time.Minute) })); err != nil {
		t.Fatalf("the new secret: %v", err)
	}
}

func TestAppleSecretRefusesWrongKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(p256)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		key  []byte
		want string
	}{
		"RSA":                   {p8(t, rsaKey), "an RSA key, expected an EC P-256 key"},
		"Ed25519":               {p8(t, edKey), "an Ed25519 key, expected an EC P-256 key"},
		"P-384":                 {p8(t, p384), "an EC key on P-384, expected P-256"},
		"garbage":               {[]byte("not a key at all"), "not a PEM file"},
		"PEM of garbage":        {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")}), "not a PKCS#8 private key"},
		"SEC 1, not PKCS#8":     {pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), `not a PKCS#8 private key (PEM "EC PRIVATE KEY"`},
		"no key":                {nil, "not a PEM file"},
		"a certificate, no key": {pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}}), "not a PKCS#8 private key"},
	} {
		_, err := NewAppleSecret(AppleConfig{TeamID: "T", KeyID: "K", ClientID: "C", Key: c.key})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	if _, err := NewAppleSecret(AppleConfig{KeyID: "K", ClientID: "C", Key: p8(t, p256)}); err == nil {
		t.Error("no team id: accepted")
	}
}

// TestClientSecretFunc: the secret of each token request comes from the
// function (Apple's is signed for the request); a function that fails
// fails the flow as unavailable.
func TestClientSecretFunc(t *testing.T) {
	m := startProvider(t)
	m.QueueUser(&mockoidc.MockUser{Subject: "u-1", Email: "ada@example.com", EmailVerified: true})
	calls := 0
	var fail error
	p, err := NewOIDC(OIDCConfig{ID: "apple", Issuer: m.Issuer(), ClientID: m.ClientID, FormPost: true,
		ClientSecretFunc: func() (string, error) { calls++; return m.ClientSecret, fail }})
	if err != nil {
		t.Fatal(err)
	}
	a := attempt(t)
	u, err := p.AuthCodeURL(context.Background(), redirect, a)
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := url.Parse(u); q.Query().Get("response_mode") != "form_post" {
		t.Errorf("FormPost: %s has no response_mode=form_post", u)
	}
	if calls != 0 {
		t.Error("the secret was made for the authorization URL, which carries none")
	}
	id, err := p.Exchange(context.Background(), redirect, authorize(t, p, a), a.Verifier, a.Nonce)
	if err != nil || id.Subject != "u-1" || calls != 1 {
		t.Fatalf("%+v %v, %d calls", id, err, calls)
	}
	fail = errors.New("no key")
	if _, err := p.Exchange(context.Background(), redirect, "code", a.Verifier, a.Nonce); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a failing secret function: %v", err)
	}
	if _, err := NewOIDC(OIDCConfig{ID: "apple", Issuer: m.Issuer(), ClientID: m.ClientID, ClientSecret: "s",
		ClientSecretFunc: func() (string, error) { return "", nil }}); err == nil {
		t.Error("a secret and a secret function both accepted")
	}
	if u, _ := client(t, m, m.ClientID).AuthCodeURL(context.Background(), redirect, a); strings.Contains(u, "response_mode") {
		t.Errorf("response_mode without FormPost: %s", u)
	}
}
