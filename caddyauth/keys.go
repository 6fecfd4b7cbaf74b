package caddyauth

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
)

// signingKeySetting names the stored Ed25519 key in the settings table.
const signingKeySetting = "signing_key_ed25519"

// loadKeys builds the realm's key set, the box that seals TOTP secrets
// and the CSRF key.
// With a signing key the realm signs HS256 with it; without one, it loads the
// Ed25519 key kept in the store, generating and storing it on first start
// (concurrent first starts agree: the first stored key wins). The secrets
// key, when absent, is derived from the signing key material.
func (rl *realm) loadKeys(ctx context.Context, signingKey, secretsKey string) error {
	cfg := keySetConfig{Issuer: rl.policy.issuer, Audience: rl.policy.audience, Leeway: rl.policy.leeway}
	var material []byte
	if signingKey != "" {
		ks, err := newHMACKeySet([]byte(signingKey), cfg)
		if err != nil {
			return fmt.Errorf("signing_key: %v", err)
		}
		rl.keys = ks
		material = []byte(signingKey)
	} else {
		fresh, err := generateEd25519Key(rl.rand)
		if err != nil {
			return err
		}
		der, err := marshalEd25519Key(fresh)
		if err != nil {
			return err
		}
		stored, err := rl.store.LoadOrStoreSetting(ctx, signingKeySetting, der)
		if err != nil {
			return fmt.Errorf("loading the signing key from the store: %w", err)
		}
		priv, err := parseEd25519Key(stored)
		if err != nil {
			return err
		}
		if rl.keys, err = newEd25519KeySet(priv, cfg); err != nil {
			return err
		}
		material = priv.Seed()
	}
	if secretsKey != "" {
		material = []byte(secretsKey)
	}
	if len(material) < 32 {
		return errors.New("secrets_key must be at least 32 bytes")
	}
	key, err := hkdf.Key(sha256.New, material, nil, "caddy-jwt-allauth totp secrets", 32)
	if err != nil {
		return err
	}
	// Hashes that leave the process (throttle keys in Redis, e-mail
	// hashes in logs) are keyed, so they cannot be confirmed by guessing
	// an address, and every node sharing the keys computes the same ones.
	if rl.hashKey, err = hkdf.Key(sha256.New, material, nil, "caddy-jwt-allauth log and limiter hashes", 32); err != nil {
		return err
	}
	if rl.secrets, err = newSecretBox(key); err != nil {
		return err
	}
	// The HTML forms' CSRF tokens are MACs under a key of their own.
	rl.csrfKey, err = hkdf.Key(sha256.New, material, nil, "caddy-jwt-allauth csrf", 32)
	return err
}
