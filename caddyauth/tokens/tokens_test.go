package tokens

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

var (
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")
	testConfig = Config{Issuer: "https://auth.example.com", Audience: "example.com", Leeway: 10 * time.Second}
)

func testEdKeySet(t testing.TB) *KeySet {
	t.Helper()
	priv, err := GenerateEd25519Key(testrand.New(1))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := NewEd25519(priv, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func testHSKeySet(t testing.TB) *KeySet {
	t.Helper()
	ks, err := NewHMAC(testSecret, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func testClaims(typ string, now time.Time, ttl time.Duration) Claims {
	return Claims{
		TokenType:     typ,
		UserID:        "42",
		Session:       "0123456789abcdef0123456789abcdef",
		SessionIAT:    now.Unix(),
		Role:          1000,
		EmailVerified: true,
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        "fedcba9876543210fedcba9876543210",
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
}

func mustSign(t *testing.T, ks *KeySet, c Claims) string {
	t.Helper()
	tok, err := ks.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func eachKeySet(t *testing.T, f func(t *testing.T, ks *KeySet)) {
	t.Run("HS256", func(t *testing.T) { f(t, testHSKeySet(t)) })
	t.Run("EdDSA", func(t *testing.T) { f(t, testEdKeySet(t)) })
}

func TestTokenRoundTrip(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		for _, typ := range []string{TypeAccess, TypeRefresh} {
			in := testClaims(typ, testNow, 30*time.Minute)
			tok := mustSign(t, ks, in)
			got, err := ks.Parse(tok, typ, testNow.Add(time.Minute))
			if err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			if got.TokenType != typ || got.UserID != "42" || got.Subject != "42" ||
				got.Session != in.Session || got.SessionIAT != testNow.Unix() ||
				got.Role != 1000 || !got.EmailVerified || got.ID != in.ID ||
				got.Issuer != testConfig.Issuer || len(got.Audience) != 1 || got.Audience[0] != testConfig.Audience ||
				!got.ExpiresAt.Equal(testNow.Add(30*time.Minute)) || !got.IssuedAt.Equal(testNow) {
				t.Fatalf("%s: claims changed in the round trip: %+v", typ, got)
			}
		}
	})
}

func TestTokenJSONNames(t *testing.T) {
	ks := testHSKeySet(t)
	tok := mustSign(t, ks, testClaims(TypeRefresh, testNow, time.Hour))
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"token_type", "exp", "iat", "jti", "user_id", "session", "session_iat", "role", "email_verified", "iss", "aud", "sub"} {
		if _, ok := m[name]; !ok {
			t.Errorf("claim %q missing from %s", name, payload)
		}
	}
	for _, name := range []string{"for_user", "one_time_permission", "nbf"} {
		if _, ok := m[name]; ok {
			t.Errorf("claim %q should be omitted: %s", name, payload)
		}
	}
	if m["user_id"] != "42" || m["sub"] != "42" {
		t.Errorf("user_id and sub must be the string id: %s", payload)
	}
}

func TestTokenExpired(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		tok := mustSign(t, ks, testClaims(TypeAccess, testNow, 30*time.Minute))
		// Within the leeway it is still accepted.
		if _, err := ks.Parse(tok, TypeAccess, testNow.Add(30*time.Minute+5*time.Second)); err != nil {
			t.Fatalf("within leeway: %v", err)
		}
		_, err := ks.Parse(tok, TypeAccess, testNow.Add(30*time.Minute+11*time.Second))
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("got %v, want expired", err)
		}
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrWrongType) {
			t.Fatalf("expired must be told apart from invalid: %v", err)
		}
	})
}

func TestTokenNotYetValid(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		// Issued in the future (another node's clock runs ahead).
		tok := mustSign(t, ks, testClaims(TypeAccess, testNow.Add(8*time.Second), time.Minute))
		if _, err := ks.Parse(tok, TypeAccess, testNow); err != nil {
			t.Fatalf("iat within leeway: %v", err)
		}
		tok = mustSign(t, ks, testClaims(TypeAccess, testNow.Add(20*time.Second), time.Minute))
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("iat beyond leeway: got %v, want invalid", err)
		}
		// nbf in the future.
		c := testClaims(TypeAccess, testNow, time.Minute)
		c.NotBefore = jwt.NewNumericDate(testNow.Add(time.Minute))
		tok = mustSign(t, ks, c)
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("nbf: got %v, want invalid", err)
		}
		if _, err := ks.Parse(tok, TypeAccess, testNow.Add(55*time.Second)); err != nil {
			t.Fatalf("nbf within leeway: %v", err)
		}
	})
}

func TestTokenWrongType(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		refresh := mustSign(t, ks, testClaims(TypeRefresh, testNow, time.Hour))
		if _, err := ks.Parse(refresh, TypeAccess, testNow); !errors.Is(err, ErrWrongType) {
			t.Fatalf("refresh as access: got %v", err)
		}
		access := mustSign(t, ks, testClaims(TypeAccess, testNow, time.Hour))
		if _, err := ks.Parse(access, TypeRefresh, testNow); !errors.Is(err, ErrWrongType) {
			t.Fatalf("access as refresh: got %v", err)
		}
	})
}

func TestOneTimeToken(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		c := Claims{
			ForUser:           42,
			OneTimePermission: "PASS_RESET_ACCESS",
			RegisteredClaims: jwt.RegisteredClaims{
				ID:        "00112233445566778899aabbccddeeff",
				IssuedAt:  jwt.NewNumericDate(testNow),
				ExpiresAt: jwt.NewNumericDate(testNow.Add(30 * time.Minute)),
			},
		}
		tok, err := ks.SignOneTime(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ks.ParseOneTime(tok, "PASS_RESET_ACCESS", testNow)
		if err != nil || got.ForUser != 42 || got.TokenType != TypeAccess {
			t.Fatalf("got %+v, %v", got, err)
		}
		if _, err := ks.ParseOneTime(tok, "PASS_SET_ACCESS", testNow); !errors.Is(err, ErrWrongType) {
			t.Fatalf("other permission: got %v", err)
		}
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrWrongType) {
			t.Fatalf("capability token as access token: got %v", err)
		}
		access := mustSign(t, ks, testClaims(TypeAccess, testNow, time.Hour))
		if _, err := ks.ParseOneTime(access, "PASS_RESET_ACCESS", testNow); !errors.Is(err, ErrWrongType) {
			t.Fatalf("access token as capability token: got %v", err)
		}
		if _, err := ks.SignOneTime(testClaims(TypeAccess, testNow, time.Hour)); err == nil {
			t.Fatal("signOneTime accepted a session token's claims")
		}
	})
}

func TestTokenAlgNone(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, testClaims(TypeAccess, testNow, time.Hour)).
			SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("alg none: got %v", err)
		}
	})
}

func TestTokenAlgorithmConfusion(t *testing.T) {
	ed := testEdKeySet(t)
	hs := testHSKeySet(t)
	c := testClaims(TypeAccess, testNow, time.Hour)
	c.Issuer, c.Audience = testConfig.Issuer, jwt.ClaimStrings{testConfig.Audience}

	// HS256 signed with the public key bytes as the secret, with the right kid.
	pub := ed.verifyKey.(ed25519.PublicKey)
	forged := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	forged.Header["kid"] = ed.KeyID()
	tok, err := forged.SignedString([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ed.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 token under EdDSA key set: got %v", err)
	}
	// The same with the JWKS "x" text as the secret.
	tok, err = forged.SignedString([]byte(base64.RawURLEncoding.EncodeToString(pub)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ed.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
		t.Fatalf("HS256 token (x as secret) under EdDSA key set: got %v", err)
	}

	// An EdDSA token under an HS key set.
	tok = mustSign(t, ed, testClaims(TypeAccess, testNow, time.Hour))
	if _, err := hs.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EdDSA token under HS256 key set: got %v", err)
	}
}

func TestTokenBadSignature(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		tok := mustSign(t, ks, testClaims(TypeAccess, testNow, time.Hour))
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 1
		bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
		if _, err := ks.Parse(bad, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("flipped signature bit: got %v", err)
		}
		// A changed payload under the old signature.
		c := testClaims(TypeAccess, testNow, time.Hour)
		c.Role = 900
		other := strings.Split(mustSign(t, ks, c), ".")
		spliced := parts[0] + "." + other[1] + "." + parts[2]
		if _, err := ks.Parse(spliced, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("spliced payload: got %v", err)
		}
		// A token from another key of the same kind.
		var other2 *KeySet
		if ks.Algorithm() == "HS256" {
			other2, _ = NewHMAC([]byte(strings.Repeat("x", 32)), testConfig)
		} else {
			priv, _ := GenerateEd25519Key(testrand.New(2))
			other2, _ = NewEd25519(priv, testConfig)
		}
		tok = mustSign(t, other2, testClaims(TypeAccess, testNow, time.Hour))
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("other key: got %v", err)
		}
		// The same other-key token without a kid header still fails.
		_, err := ks.Parse(stripKid(t, other2, testClaims(TypeAccess, testNow, time.Hour)), TypeAccess, testNow)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("other key without kid: got %v", err)
		}
	})
}

// stripKid signs c with ks's key but without a kid header.
func stripKid(t *testing.T, ks *KeySet, c Claims) string {
	t.Helper()
	c.Issuer, c.Audience, c.Subject = ks.cfg.Issuer, jwt.ClaimStrings{ks.cfg.Audience}, c.UserID
	tok, err := jwt.NewWithClaims(ks.method, c).SignedString(ks.signKey)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenWithoutKidAccepted(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		if _, err := ks.Parse(stripKid(t, ks, testClaims(TypeAccess, testNow, time.Hour)), TypeAccess, testNow); err != nil {
			t.Fatalf("own token without kid: %v", err)
		}
	})
}

func TestTokenIssuerAudience(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		cases := map[string]Config{
			"wrong aud": {Issuer: testConfig.Issuer, Audience: "other.example.com"},
			"wrong iss": {Issuer: "https://evil.example.com", Audience: testConfig.Audience},
		}
		for name, cfg := range cases {
			// Same key, other claim checks: sign under the other config.
			other := *ks
			other.cfg = cfg
			tok := mustSign(t, &other, testClaims(TypeAccess, testNow, time.Hour))
			if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: got %v", name, err)
			}
		}
	})
}

func TestTokenMissingExp(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		c := testClaims(TypeAccess, testNow, time.Hour)
		if _, err := ks.Sign(Claims{TokenType: TypeAccess}); err == nil {
			t.Fatal("sign accepted claims without exp")
		}
		c.ExpiresAt = nil
		if _, err := ks.Parse(stripKid(t, ks, c), TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("missing exp: got %v", err)
		}
	})
}

func TestTokenOversized(t *testing.T) {
	ks := testHSKeySet(t)
	c := testClaims(TypeAccess, testNow, time.Hour)
	c.Session = strings.Repeat("a", maxTokenLength)
	tok := mustSign(t, ks, c)
	if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("oversized token: got %v", err)
	}
	if _, err := ks.Parse(strings.Repeat("a", 1<<20), TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
		t.Fatalf("1 MiB garbage: got %v", err)
	}
}

func TestTokenGarbage(t *testing.T) {
	ks := testEdKeySet(t)
	for _, tok := range []string{"", ".", "..", "a.b.c", "eyJhbGciOiJFZERTQSJ9..", "Bearer x"} {
		if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: got %v", tok, err)
		}
	}
}

func TestTokenKidHeader(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		tok := mustSign(t, ks, testClaims(TypeAccess, testNow, time.Hour))
		header, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
		var h map[string]string
		if err := json.Unmarshal(header, &h); err != nil {
			t.Fatal(err)
		}
		if h["kid"] == "" || h["kid"] != ks.KeyID() || h["alg"] != ks.Algorithm() || h["typ"] != "JWT" {
			t.Fatalf("header %s", header)
		}
		if strings.Contains(string(header), base64.RawURLEncoding.EncodeToString(testSecret[:12])) {
			t.Fatal("kid reveals the secret")
		}
		// A foreign kid is refused even with a valid signature.
		c := testClaims(TypeAccess, testNow, time.Hour)
		c.Issuer, c.Audience, c.Subject = ks.cfg.Issuer, jwt.ClaimStrings{ks.cfg.Audience}, c.UserID
		forged := jwt.NewWithClaims(ks.method, c)
		forged.Header["kid"] = "../../etc/passwd"
		s, _ := forged.SignedString(ks.signKey)
		if _, err := ks.Parse(s, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
			t.Fatalf("foreign kid: got %v", err)
		}
	})
	// The kid is stable for the same key and differs between keys.
	a, _ := NewHMAC(testSecret, testConfig)
	b, _ := NewHMAC(testSecret, testConfig)
	c, _ := NewHMAC(append([]byte("y"), testSecret...), testConfig)
	if a.KeyID() != b.KeyID() || a.KeyID() == c.KeyID() {
		t.Fatal("HS kid not stable or not distinct")
	}
	if testEdKeySet(t).KeyID() != testEdKeySet(t).KeyID() {
		t.Fatal("Ed25519 kid not stable")
	}
}

func TestJWKS(t *testing.T) {
	ed := testEdKeySet(t)
	raw, err := ed.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("jwks %s", raw)
	}
	k := set.Keys[0]
	want := map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": ed.KeyID(), "alg": "EdDSA", "use": "sig"}
	for name, v := range want {
		if k[name] != v {
			t.Errorf("%s = %q, want %q", name, k[name], v)
		}
	}
	if len(k) != 6 {
		t.Errorf("unexpected members in %s", raw)
	}
	x, err := base64.RawURLEncoding.DecodeString(k["x"])
	if err != nil || !ed25519.PublicKey(x).Equal(ed.verifyKey) {
		t.Fatalf("x does not decode to the public key: %v", err)
	}
	// A token verifies with the published key alone.
	tok := mustSign(t, ed, testClaims(TypeAccess, testNow, time.Hour))
	_, err = jwt.Parse(tok, func(*jwt.Token) (any, error) { return ed25519.PublicKey(x), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return testNow }))
	if err != nil {
		t.Fatalf("verify with JWKS key: %v", err)
	}

	raw, err = testHSKeySet(t).JWKS()
	if err != nil || string(raw) != `{"keys":[]}` {
		t.Fatalf("HS256 jwks = %s, %v", raw, err)
	}
}

func TestKeySetConfigErrors(t *testing.T) {
	secret := []byte("short-but-secret-value")
	_, err := NewHMAC(secret, testConfig)
	if err == nil {
		t.Fatal("short secret accepted")
	}
	if strings.Contains(err.Error(), string(secret)) || strings.Contains(err.Error(), "short-but") {
		t.Fatalf("error echoes the secret: %v", err)
	}
	for name, cfg := range map[string]Config{
		"leeway":   {Issuer: "i", Audience: "a", Leeway: 31 * time.Second},
		"negative": {Issuer: "i", Audience: "a", Leeway: -time.Second},
		"issuer":   {Audience: "a"},
		"audience": {Issuer: "i"},
	} {
		if _, err := NewHMAC(testSecret, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewEd25519(ed25519.PrivateKey{1, 2, 3}, testConfig); err == nil {
		t.Error("truncated Ed25519 key accepted")
	}
}

func TestEd25519KeySerialisation(t *testing.T) {
	priv, err := GenerateEd25519Key(testrand.New(7))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := GenerateEd25519Key(testrand.New(7))
	if !priv.Equal(again) {
		t.Fatal("generation is not a function of the reader")
	}
	der, err := MarshalEd25519Key(priv)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseEd25519Key(der)
	if err != nil || !back.Equal(priv) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := ParseEd25519Key([]byte("not a key")); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, err := GenerateEd25519Key(strings.NewReader("short")); err == nil {
		t.Fatal("short reader accepted")
	}
}

func TestNewTokenID(t *testing.T) {
	id, err := NewID(testrand.New(3))
	if err != nil || len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("id %q, %v", id, err)
	}
	other, _ := NewID(testrand.New(4))
	if id == other {
		t.Fatal("ids repeat")
	}
}

func FuzzParseToken(f *testing.F) {
	hs := testHSKeySet(f)
	ed := testEdKeySet(f)
	for _, ks := range []*KeySet{hs, ed} {
		for _, typ := range []string{TypeAccess, TypeRefresh} {
			tok, err := ks.Sign(testClaims(typ, testNow, time.Hour))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(tok)
		}
	}
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, ks := range []*KeySet{hs, ed} {
			c, err := ks.Parse(tok, TypeAccess, testNow)
			if err == nil {
				// Only a genuinely signed access token may pass.
				if c.TokenType != TypeAccess || c.UserID == "" || c.ExpiresAt == nil {
					t.Fatalf("accepted %q as %+v", tok, c)
				}
				continue
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrWrongType) {
				t.Fatalf("untyped error %v", err)
			}
		}
	})
}

// TestTokenStrictForm: correctly signed tokens that the JWT library would
// take but that are not in the form this module writes are refused: dates
// as strings, a typ header other than JWT, a user id that is not a
// positive decimal integer.
func TestTokenStrictForm(t *testing.T) {
	eachKeySet(t, func(t *testing.T, ks *KeySet) {
		sign := func(mutate func(m jwt.MapClaims), header map[string]any) string {
			t.Helper()
			c := testClaims(TypeAccess, testNow, time.Hour)
			m := jwt.MapClaims{
				"token_type": c.TokenType, "user_id": c.UserID, "sub": c.UserID, "session": c.Session,
				"session_iat": c.SessionIAT, "role": c.Role, "email_verified": true, "jti": c.ID,
				"iat": testNow.Unix(), "exp": testNow.Add(time.Hour).Unix(),
				"iss": testConfig.Issuer, "aud": testConfig.Audience,
			}
			if mutate != nil {
				mutate(m)
			}
			tok := jwt.NewWithClaims(ks.method, m)
			tok.Header["kid"] = ks.KeyID()
			for k, v := range header {
				tok.Header[k] = v
			}
			s, err := tok.SignedString(ks.signKey)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		if _, err := ks.Parse(sign(nil, nil), TypeAccess, testNow); err != nil {
			t.Fatalf("the well-formed token: %v", err)
		}
		if _, err := ks.Parse(sign(nil, map[string]any{"typ": "jwt"}), TypeAccess, testNow); err != nil {
			t.Fatalf("typ jwt (case-insensitive): %v", err)
		}
		future := strconv.FormatInt(testNow.Add(time.Hour).Unix(), 10)
		for name, tok := range map[string]string{
			"exp as string":     sign(func(m jwt.MapClaims) { m["exp"] = future }, nil),
			"iat as string":     sign(func(m jwt.MapClaims) { m["iat"] = strconv.FormatInt(testNow.Unix(), 10) }, nil),
			"nbf as string":     sign(func(m jwt.MapClaims) { m["nbf"] = "0" }, nil),
			"typ of another":    sign(nil, map[string]any{"typ": "refresh+jwt"}),
			"typ not a string":  sign(nil, map[string]any{"typ": 1}),
			"user_id text":      sign(func(m jwt.MapClaims) { m["user_id"], m["sub"] = "admin", "admin" }, nil),
			"user_id negative":  sign(func(m jwt.MapClaims) { m["user_id"], m["sub"] = "-1", "-1" }, nil),
			"user_id zero":      sign(func(m jwt.MapClaims) { m["user_id"], m["sub"] = "0", "0" }, nil),
			"user_id padded":    sign(func(m jwt.MapClaims) { m["user_id"], m["sub"] = "042", "042" }, nil),
			"user_id plus sign": sign(func(m jwt.MapClaims) { m["user_id"], m["sub"] = "+42", "+42" }, nil),
		} {
			if _, err := ks.Parse(tok, TypeAccess, testNow); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: got %v, want invalid", name, err)
			}
		}
	})
}
