// Package tokens signs and verifies the JWTs caddy-jwt-allauth issues:
// one key and one algorithm per key set (HS256 or EdDSA), the reference's
// claims, strict parsing, and the JWKS of the public key. It is pure: no
// HTTP, no Caddy, no store.
package tokens

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token types carried in the token_type claim.
const (
	TypeAccess  = "access"
	TypeRefresh = "refresh"
)

// maxTokenLength is the longest token string Parse looks at. Our own tokens
// are a few hundred bytes; anything much longer is rejected before any
// base64 or JSON decoding happens.
const maxTokenLength = 8 << 10

// maxLeeway is the largest clock-skew allowance a key set accepts
// (DESIGN.md decision 5).
const maxLeeway = 30 * time.Second

// minHMACSecret is the shortest HS256 secret accepted (RFC 7518 §3.2: at
// least the size of the hash output).
const minHMACSecret = 32

// Errors returned by KeySet.Parse. Their texts are the API's answers, so a
// caller can map them with errors.Is and write err.Error() as the detail.
var (
	ErrExpired   = errors.New("Token is expired")
	ErrInvalid   = errors.New("Token is invalid")
	ErrWrongType = errors.New("Token has wrong type")
)

// Claims are the claims of every token this module issues. The names follow
// django-jwt-allauth (token_type, user_id, session, session_iat, role,
// email_verified) plus the registered claims iss, aud, sub, exp, iat and
// jti from the embedded jwt.RegisteredClaims.
//
// ForUser and OneTimePermission are only set on the one-time capability
// tokens of the password-reset and set-password flows; such a token has no
// user_id and no session, and Parse never accepts it as an access or
// refresh token (see ParseOneTime).
type Claims struct {
	TokenType         string `json:"token_type"`
	UserID            string `json:"user_id,omitempty"`
	Session           string `json:"session,omitempty"`
	SessionIAT        int64  `json:"session_iat,omitempty"`
	Role              int    `json:"role"`
	EmailVerified     bool   `json:"email_verified"`
	ForUser           int64  `json:"for_user,omitempty"`
	OneTimePermission string `json:"one_time_permission,omitempty"`
	jwt.RegisteredClaims
}

// NumericUserID is the numeric form of the user_id claim (0 when
// malformed).
func (c Claims) NumericUserID() int64 {
	id, _ := strconv.ParseInt(c.UserID, 10, 64)
	return id
}

// Config holds the claim checks shared by both kinds of key set.
type Config struct {
	// Issuer is written to and required in the iss claim.
	Issuer string
	// Audience is written to and required in the aud claim.
	Audience string
	// Leeway is the clock-skew allowance for exp, nbf and iat, at most 30 s.
	Leeway time.Duration
}

// KeySet signs and verifies tokens with exactly one key and one algorithm:
// HS256 with a shared secret, or EdDSA with an Ed25519 key pair.
type KeySet struct {
	method    jwt.SigningMethod
	signKey   any // []byte or ed25519.PrivateKey
	verifyKey any // []byte or ed25519.PublicKey
	kid       string
	cfg       Config
	opts      []jwt.ParserOption
}

// NewHMAC returns an HS256 key set. The secret must be at least 32
// bytes; the error never contains the secret.
func NewHMAC(secret []byte, cfg Config) (*KeySet, error) {
	if len(secret) < minHMACSecret {
		return nil, fmt.Errorf("HS256 signing key is %d bytes, need at least %d", len(secret), minHMACSecret)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	key := append([]byte(nil), secret...)
	// The kid is an HMAC of a fixed label under the secret: stable, and it
	// tells nothing about the secret that a signed token does not already.
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("caddy-jwt-allauth key id"))
	kid := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:12])
	return newKeySet(jwt.SigningMethodHS256, key, key, kid, cfg), nil
}

// NewEd25519 returns an EdDSA key set for priv.
func NewEd25519(priv ed25519.PrivateKey, cfg Config) (*KeySet, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, errors.New("Ed25519 private key has the wrong size")
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	pub := priv.Public().(ed25519.PublicKey)
	return newKeySet(jwt.SigningMethodEdDSA, priv, pub, ed25519KeyID(pub), cfg), nil
}

func newKeySet(method jwt.SigningMethod, signKey, verifyKey any, kid string, cfg Config) *KeySet {
	return &KeySet{
		method:    method,
		signKey:   signKey,
		verifyKey: verifyKey,
		kid:       kid,
		cfg:       cfg,
		opts: []jwt.ParserOption{
			jwt.WithValidMethods([]string{method.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithLeeway(cfg.Leeway),
			// One spelling per token: unused bits of the last base64
			// character must be zero, so a signature has one form and
			// fills one cache slot.
			jwt.WithStrictDecoding(),
		},
	}
}

func (c Config) check() error {
	if c.Issuer == "" {
		return errors.New("token issuer must not be empty")
	}
	if c.Audience == "" {
		return errors.New("token audience must not be empty")
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		return fmt.Errorf("token leeway %s is outside 0..%s", c.Leeway, maxLeeway)
	}
	return nil
}

// Algorithm returns the JWS alg of the key set ("HS256" or "EdDSA").
func (ks *KeySet) Algorithm() string { return ks.method.Alg() }

// KeyID returns the kid written into every token header.
func (ks *KeySet) KeyID() string { return ks.kid }

// Sign returns the signed token for c. The issuer and audience are always
// the key set's, the subject is the user id, and c must carry an
// expiry and a token type.
func (ks *KeySet) Sign(c Claims) (string, error) {
	if c.TokenType != TypeAccess && c.TokenType != TypeRefresh {
		return "", fmt.Errorf("cannot sign a token of type %q", c.TokenType)
	}
	if c.ExpiresAt == nil {
		return "", errors.New("cannot sign a token without exp")
	}
	c.Issuer = ks.cfg.Issuer
	c.Audience = jwt.ClaimStrings{ks.cfg.Audience}
	c.Subject = c.UserID
	t := jwt.NewWithClaims(ks.method, c)
	t.Header["kid"] = ks.kid
	return t.SignedString(ks.signKey)
}

// Parse verifies token at time now and returns its claims. It accepts only
// the key set's algorithm and key, requires exp, iss and aud, and requires
// token_type == wantType. A one-time capability token is never accepted
// here. Errors wrap ErrExpired, ErrInvalid or ErrWrongType.
func (ks *KeySet) Parse(token, wantType string, now time.Time) (Claims, error) {
	c, err := ks.verify(token, now)
	if err != nil {
		return Claims{}, err
	}
	if c.TokenType != wantType || c.OneTimePermission != "" || c.ForUser != 0 {
		return Claims{}, ErrWrongType
	}
	if !canonicalUserID(c.UserID) || c.Subject != c.UserID || c.Session == "" {
		return Claims{}, ErrInvalid
	}
	return c, nil
}

// canonicalUserID reports whether s is a user id as this module writes it:
// a positive decimal integer without sign or leading zeros. Anything else
// would reach the upstream through {http.auth.user.id} as an identity no
// account has.
func canonicalUserID(s string) bool {
	id, err := strconv.ParseInt(s, 10, 64)
	return err == nil && id > 0 && strconv.FormatInt(id, 10) == s
}

// ParseOneTime verifies a one-time capability token (password reset or set
// password) whose one_time_permission must equal permission. Such tokens
// are access-typed, as in the reference, but carry for_user instead of
// user_id and session.
func (ks *KeySet) ParseOneTime(token, permission string, now time.Time) (Claims, error) {
	c, err := ks.verify(token, now)
	if err != nil {
		return Claims{}, err
	}
	if c.TokenType != TypeAccess || permission == "" || c.OneTimePermission != permission {
		return Claims{}, ErrWrongType
	}
	if c.ForUser == 0 || c.UserID != "" || c.Session != "" {
		return Claims{}, ErrInvalid
	}
	return c, nil
}

// SignOneTime signs a one-time capability token; c must set ForUser,
// OneTimePermission and an expiry, and no user id or session.
func (ks *KeySet) SignOneTime(c Claims) (string, error) {
	if c.ForUser == 0 || c.OneTimePermission == "" || c.UserID != "" || c.Session != "" {
		return "", errors.New("a one-time token needs for_user and one_time_permission, and no user_id or session")
	}
	c.TokenType = TypeAccess
	return ks.Sign(c)
}

// verify checks length, algorithm, key, signature, exp, nbf, iat, iss and
// aud, but not the token type.
func (ks *KeySet) verify(token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLength {
		return Claims{}, fmt.Errorf("%w: token longer than %d bytes", ErrInvalid, maxTokenLength)
	}
	var c Claims
	// The time source differs per call and jwt.Parser shares its validator
	// between copies, so each call builds its own (cheap) parser.
	opts := append(ks.opts[:len(ks.opts):len(ks.opts)], jwt.WithTimeFunc(func() time.Time { return now }))
	t, err := jwt.NewParser(opts...).ParseWithClaims(token, &c, ks.keyFunc)
	if err == nil {
		err = strictForm(t)
	}
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
}

// strictForm refuses what the JWT library tolerates but no token of ours
// looks like: a `typ` header other than "JWT", and exp, iat or nbf written
// as strings (the library reads "9999999999" as a date, RFC 7519 §2 says a
// NumericDate is a number).
func strictForm(t *jwt.Token) error {
	if typ, present := t.Header["typ"]; present {
		if s, ok := typ.(string); !ok || !strings.EqualFold(s, "JWT") {
			return errors.New("unexpected typ header")
		}
	}
	parts := strings.Split(t.Raw, ".")
	if len(parts) != 3 {
		return errors.New("token is malformed")
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return errors.New("token is malformed")
	}
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Iat json.RawMessage `json:"iat"`
		Nbf json.RawMessage `json:"nbf"`
	}
	if err := json.Unmarshal(payload, &dates); err != nil {
		return errors.New("token is malformed")
	}
	for _, d := range []json.RawMessage{dates.Exp, dates.Iat, dates.Nbf} {
		if len(d) > 0 && d[0] == '"' {
			return errors.New("a date claim is not a number")
		}
	}
	return nil
}

// keyFunc returns the verification key after checking that the token's
// method is ours and that a kid, when present, is ours. The kid is only
// compared, never used to look anything up.
func (ks *KeySet) keyFunc(t *jwt.Token) (any, error) {
	switch ks.verifyKey.(type) {
	case []byte:
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
	case ed25519.PublicKey:
		if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
			return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
		}
	default:
		return nil, errors.New("key set has no usable key")
	}
	if t.Method.Alg() != ks.method.Alg() {
		return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
	}
	if kid, present := t.Header["kid"]; present && kid != ks.kid {
		return nil, errors.New("unknown key id")
	}
	return ks.verifyKey, nil
}

// jwk is one RFC 8037 OKP public key.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the JSON Web Key Set of the public keys: the Ed25519 key, or
// an empty list for HS256 (a shared secret is never published).
func (ks *KeySet) JWKS() ([]byte, error) {
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	if pub, ok := ks.verifyKey.(ed25519.PublicKey); ok {
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(pub),
			Kid: ks.kid,
			Alg: jwt.SigningMethodEdDSA.Alg(),
			Use: "sig",
		})
	}
	return json.Marshal(set)
}

// ed25519KeyID returns the first 16 characters of the RFC 7638 JWK
// thumbprint of pub.
func ed25519KeyID(pub ed25519.PublicKey) string {
	// RFC 7638 §3.2: the required members in lexicographic order, no spaces.
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:16]
}

// GenerateEd25519Key returns a new private key made from 32 bytes of r.
func GenerateEd25519Key(r io.Reader) (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("reading key seed: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// MarshalEd25519Key encodes priv as PKCS #8 DER, the form kept (in PEM) in
// Caddy's storage and readable by openssl.
func MarshalEd25519Key(priv ed25519.PrivateKey) ([]byte, error) {
	return x509.MarshalPKCS8PrivateKey(priv)
}

// ParseEd25519Key decodes a key written by MarshalEd25519Key.
func ParseEd25519Key(der []byte) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, errors.New("stored signing key is not a PKCS #8 private key")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("stored signing key is a %T, not Ed25519", k)
	}
	return priv, nil
}

// NewID returns 16 bytes of r as 32 lower-case hex characters, the
// form of jti and session values.
func NewID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("reading random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
