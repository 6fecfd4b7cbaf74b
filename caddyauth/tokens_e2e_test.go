package caddyauth_test

import (
	"encoding/base64"
	"strings"
	"testing"
)

// altSpellings returns every other spelling of a base64url segment that a
// lenient decoder reads as the same bytes: the unused low bits of its last
// character set otherwise.
func altSpellings(t *testing.T, seg string) []string {
	t.Helper()
	want, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("decoding %q: %v", seg, err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []string
	for _, c := range alphabet {
		alt := seg[:len(seg)-1] + string(c)
		if alt == seg {
			continue
		}
		if got, err := base64.RawURLEncoding.DecodeString(alt); err == nil && string(got) == string(want) {
			out = append(out, alt)
		}
	}
	return out
}

// A token has one spelling: the guard and the refresh endpoint refuse a
// signature whose last character differs only in bits base64 does not use,
// for both algorithms (issue: 15 spellings verified, each its own cache slot).
func TestTokenOneSpellingE2E(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", testSecret)
	for name, opts := range map[string]string{"HS256": "signing_key {env.TEST_JWT_SECRET}", "EdDSA": ""} {
		t.Run(name, func(t *testing.T) {
			s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", opts, defaultBody))
			mustCreateUser(t, userEmail, userPass, 0)
			access, refresh := s.login(userEmail, userPass)
			s.get("/", bearer(access)).expect(t, 200)

			dot := strings.LastIndexByte(access, '.')
			alts := altSpellings(t, access[dot+1:])
			if len(alts) == 0 {
				t.Fatalf("the %s signature has no lenient alternative spelling; the test proves nothing", name)
			}
			for _, sig := range alts {
				s.get("/", bearer(access[:dot+1]+sig)).expect(t, 401)
			}
			// The genuine token still passes after the refusals.
			s.get("/", bearer(access)).expect(t, 200)

			rdot := strings.LastIndexByte(refresh, '.')
			ralts := altSpellings(t, refresh[rdot+1:])
			if len(ralts) == 0 {
				t.Fatal("the refresh signature has no lenient alternative spelling")
			}
			for _, sig := range ralts {
				s.post("/auth/refresh/", nil, refreshCookie(refresh[:rdot+1]+sig)).expect(t, 401)
			}
			// None of them counted as a use of the genuine refresh token.
			s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		})
	}
}
