package secretbox

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

func testBox(t *testing.T, key []byte) *Box {
	t.Helper()
	b, err := New(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSecretBoxRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	box := testBox(t, key)
	secret := []byte("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	aad := []byte("totp:42")
	sealed, err := box.Seal(secret, aad, testrand.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if sealed[0] != secretBoxVersion || len(sealed) != 1+12+len(secret)+16 {
		t.Fatalf("sealed layout: version %d, %d bytes", sealed[0], len(sealed))
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("plaintext visible in the sealed value")
	}
	got, err := box.Open(sealed, aad)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %q, %v", got, err)
	}
	again, _ := box.Seal(secret, aad, testrand.New(2))
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals share a nonce")
	}
	empty, _ := box.Seal(nil, nil, testrand.New(3))
	if got, err := box.Open(empty, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty plaintext: %q %v", got, err)
	}
}

func TestSecretBoxTamper(t *testing.T) {
	box := testBox(t, bytes.Repeat([]byte{7}, 32))
	sealed, _ := box.Seal([]byte("secret"), []byte("totp:42"), testrand.New(1))
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x01
		if _, err := box.Open(bad, []byte("totp:42")); !errors.Is(err, ErrOpen) {
			t.Fatalf("flipped bit in byte %d: %v", i, err)
		}
	}
	for _, bad := range [][]byte{nil, sealed[:1], sealed[:13], sealed[:len(sealed)-1], append(bytes.Clone(sealed), 0)} {
		if _, err := box.Open(bad, []byte("totp:42")); !errors.Is(err, ErrOpen) {
			t.Fatalf("%d bytes: %v", len(bad), err)
		}
	}
	if _, err := box.Open(sealed, []byte("totp:43")); !errors.Is(err, ErrOpen) {
		t.Fatalf("other additional data: %v", err)
	}
}

func TestSecretBoxWrongKey(t *testing.T) {
	sealed, _ := testBox(t, bytes.Repeat([]byte{7}, 32)).Seal([]byte("secret"), nil, testrand.New(1))
	if _, err := testBox(t, bytes.Repeat([]byte{8}, 32)).Open(sealed, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong key: %v", err)
	}
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key accepted", n)
		}
	}
	if _, err := testBox(t, make([]byte, 32)).Seal([]byte("x"), nil, strings.NewReader("short")); err == nil {
		t.Fatal("short nonce reader accepted")
	}
}

func TestDeriveKey(t *testing.T) {
	material := []byte("0123456789abcdef0123456789abcdef")
	a, err := DeriveKey(material, "caddy-jwt-allauth totp secrets")
	if err != nil || len(a) != 32 {
		t.Fatalf("%x %v", a, err)
	}
	// HKDF-SHA256 with an empty salt, computed independently with Python's
	// hmac module (RFC 5869: extract with 32 zero bytes, one expand block).
	if got := hex.EncodeToString(a); got != "cc0825c50d98b77ce4f2d3c7fee8a8e2ac75f7bed4f74104288b7d18a9c0b5ed" {
		t.Fatalf("derived %s", got)
	}
	b, _ := DeriveKey(material, "caddy-jwt-allauth totp secrets")
	c, _ := DeriveKey(material, "caddy-jwt-allauth something else")
	if !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, material) {
		t.Fatal("derivation not deterministic or not separated by info")
	}
	if _, err := DeriveKey(material[:31], "x"); err == nil {
		t.Fatal("short key material accepted")
	}
	sealed, _ := testBox(t, a).Seal([]byte("s"), nil, testrand.New(1))
	if _, err := testBox(t, c).Open(sealed, nil); err == nil {
		t.Fatal("keys for different purposes open each other's values")
	}
}
