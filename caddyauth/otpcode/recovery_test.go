package otpcode

import (
	"bytes"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

func TestGenerateRecoveryCodes(t *testing.T) {
	codes, err := generateRecoveryCodes(testrand.New(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != 10 {
		t.Fatalf("%d codes", len(codes))
	}
	shape := regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)
	seen := map[string]bool{}
	for _, c := range codes {
		if !shape.MatchString(c) {
			t.Errorf("code %q not in XXXX-XXXX-XXXX-XXXX Crockford form", c)
		}
		if seen[c] {
			t.Errorf("code %q repeated", c)
		}
		seen[c] = true
	}
	// Each code is exactly 10 bytes of the reader.
	raw := make([]byte, 100)
	testrand.New(1).Read(raw)
	for i, c := range codes {
		n, _ := new(big.Int).SetString(crockfordToBase32Hex(strings.ReplaceAll(c, "-", "")), 32)
		if got := n.FillBytes(make([]byte, 10)); !bytes.Equal(got, raw[i*10:(i+1)*10]) {
			t.Errorf("code %d = %x, want %x", i, got, raw[i*10:(i+1)*10])
		}
	}
	if _, err := generateRecoveryCodes(bytes.NewReader(make([]byte, 95))); err == nil {
		t.Fatal("short reader accepted")
	}
}

// crockfordToBase32Hex maps Crockford digits to the digits big.Int reads
// in base 32 (0-9a-v), an independent check of crockfordEncode.
func crockfordToBase32Hex(s string) string {
	const base32Digits = "0123456789abcdefghijklmnopqrstuv"
	var b strings.Builder
	for _, r := range s {
		b.WriteByte(base32Digits[strings.IndexRune(crockfordAlphabet, r)])
	}
	return b.String()
}

func TestCrockfordEncode(t *testing.T) {
	cases := map[string]string{
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00": "0000000000000000",
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff": "ZZZZZZZZZZZZZZZZ",
		"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x1f": "000000000000000Z",
		"\x08\x42\x10\x84\x21\x08\x42\x10\x84\x21": "1111111111111111",
	}
	for in, want := range cases {
		if got := crockfordEncode([]byte(in)); got != want {
			t.Errorf("%x: %s, want %s", in, got, want)
		}
	}
}

func TestNormaliseRecoveryCode(t *testing.T) {
	cases := map[string]string{
		"ABCD-EFGH-JKMN-PQRS":      "ABCDEFGHJKMNPQRS",
		"abcd efgh jkmn pqrs":      "ABCDEFGHJKMNPQRS",
		" abcdefghjkmnpqrs ":       "ABCDEFGHJKMNPQRS",
		"O0Ol-1iIL-0000-ZZZZ":      "000111110000ZZZZ",
		"\tabcd--efgh-jkmn-pqrs\t": "ABCDEFGHJKMNPQRS",
	}
	for in, want := range cases {
		got, ok := NormaliseRecoveryCode(in)
		if !ok || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "ABCD-EFGH-JKMN-PQR", "ABCD-EFGH-JKMN-PQRST", "ABCD-EFGH-JKMN-PQRU", "ABCD-EFGH-JKMN-PQR!", "ABCD-EFGH-JKMN-PQRé", "12345678", strings.Repeat("A", 10000)} {
		if got, ok := NormaliseRecoveryCode(bad); ok {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
	codes, _ := generateRecoveryCodes(testrand.New(2))
	for _, c := range codes {
		n, ok := NormaliseRecoveryCode(strings.ToLower(c))
		if !ok || n != strings.ReplaceAll(c, "-", "") {
			t.Errorf("generated %q normalised to %q %v", c, n, ok)
		}
	}
}

func TestHashRecoveryCode(t *testing.T) {
	// SHA-256 of "ABCDEFGHJKMNPQRS", computed with sha256sum.
	const want = "f598056127fcd4387651a49b3a4235d8ce50d71f4091068df51511cfc10f388f"
	if got := HashRecoveryCode("ABCDEFGHJKMNPQRS"); got != want {
		t.Fatalf("hash %q, want %q", got, want)
	}
	a, _ := NormaliseRecoveryCode("abcd-efgh-jkmn-pqrs")
	b, _ := NormaliseRecoveryCode("ABCDEFGHJKMNPQRS")
	if HashRecoveryCode(a) != HashRecoveryCode(b) || HashRecoveryCode(a) == HashRecoveryCode("ABCDEFGHJKMNPQRT") {
		t.Fatal("hash does not follow the normalised code")
	}
}
