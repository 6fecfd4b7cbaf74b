package social

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AppleIssuer is Sign in with Apple's OpenID Connect issuer, and the
// audience of the client secrets Apple's token endpoint takes.
const AppleIssuer = "https://appleid.apple.com"

// appleSecretLifetime is how long one client secret is valid (Apple
// accepts up to six months); a new one is signed when less than
// appleSecretMargin is left.
const (
	appleSecretLifetime = time.Hour
	appleSecretMargin   = 10 * time.Minute
)

// AppleConfig is what Apple's client secret is made of, all from the
// Apple Developer account.
type AppleConfig struct {
	TeamID   string // the secret's iss
	KeyID    string // the id of the key, the secret's kid
	ClientID string // the Services ID, the secret's sub
	// Key is the .p8 file Apple gave for the key: a PKCS#8 PEM EC P-256
	// private key.
	Key []byte
	// Now is the clock of iat and exp; nil means the system clock.
	Now func() time.Time
}

// AppleSecret signs the client secrets of Sign in with Apple: an ES256
// JWT from the team, about the Services ID, for Apple. Its Secret method
// is the OIDCConfig.ClientSecretFunc of an OIDC provider with issuer
// AppleIssuer; a secret is kept and reused until near its expiry.
type AppleSecret struct {
	cfg AppleConfig
	key *ecdsa.PrivateKey

	mu      sync.Mutex
	secret  string
	expires time.Time
}

// NewAppleSecret checks cfg and reads its key, with an error that says
// what is wrong with the file.
func NewAppleSecret(cfg AppleConfig) (*AppleSecret, error) {
	if cfg.TeamID == "" || cfg.KeyID == "" || cfg.ClientID == "" {
		return nil, errors.New("apple: a team_id, a key_id and a client_id are needed")
	}
	block, _ := pem.Decode(cfg.Key)
	if block == nil {
		return nil, errors.New("apple key: not a PEM file (expected the .p8 file Apple gave, -----BEGIN PRIVATE KEY-----)")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("apple key: not a PKCS#8 private key (PEM %q; expected the .p8 file Apple gave): %v", block.Type, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		kind := fmt.Sprintf("%T", parsed)
		switch parsed.(type) {
		case *rsa.PrivateKey:
			kind = "an RSA key"
		case ed25519.PrivateKey:
			kind = "an Ed25519 key"
		}
		return nil, fmt.Errorf("apple key: %s, expected an EC P-256 key", kind)
	}
	if key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("apple key: an EC key on %s, expected P-256", key.Curve.Params().Name)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AppleSecret{cfg: cfg, key: key}, nil
}

// Secret is a client secret valid for some minutes at least: the kept
// one, or a newly signed one.
func (s *AppleSecret) Secret() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.secret != "" && now.Add(appleSecretMargin).Before(s.expires) {
		return s.secret, nil
	}
	exp := now.Add(appleSecretLifetime)
	// MapClaims, so that aud is the single string Apple documents rather
	// than an array.
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": s.cfg.TeamID,
		"sub": s.cfg.ClientID,
		"aud": AppleIssuer,
		"iat": now.Unix(),
		"exp": exp.Unix(),
	})
	tok.Header["kid"] = s.cfg.KeyID
	signed, err := tok.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("apple: signing the client secret: %w", err)
	}
	s.secret, s.expires = signed, exp
	return signed, nil
}
