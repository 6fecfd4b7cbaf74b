// Package secretbox seals small secrets at rest (TOTP secrets) with
// AES-256-GCM, and derives purpose-bound keys from key material with HKDF.
// It is pure: it reads randomness only from the reader it is given.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// secretBoxVersion is the first byte of every sealed value, so that a
// later format (or key) can be told apart from this one.
const secretBoxVersion = 1

// KeySize is the AES-256 key size.
const KeySize = 32

// ErrOpen is returned for any sealed value that does not
// authenticate: wrong key, wrong additional data, truncated or altered.
var ErrOpen = errors.New("sealed value does not authenticate")

// Box encrypts small secrets at rest (TOTP secrets) with AES-256-GCM.
// A sealed value is version byte || 12-byte random nonce || ciphertext and
// tag. With random nonces one key may seal up to about 2^32 values, far
// more than this module ever will.
type Box struct {
	aead cipher.AEAD
}

// New returns a box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret box key is %d bytes, need %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Box{aead: aead}, nil
}

// Seal encrypts plaintext with a nonce read from rand. additionalData is
// authenticated but not stored (for example the owner's user id and the
// purpose), so a value copied to another row does not open there.
func (b *Box) Seal(plaintext, additionalData []byte, rand io.Reader) ([]byte, error) {
	ns := b.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plaintext)+b.aead.Overhead())
	out[0] = secretBoxVersion
	if _, err := io.ReadFull(rand, out[1:]); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:], plaintext, additionalData), nil
}

// Open decrypts a value made by Seal with the same additionalData.
func (b *Box) Open(sealed, additionalData []byte) ([]byte, error) {
	ns := b.aead.NonceSize()
	if len(sealed) < 1+ns+b.aead.Overhead() || sealed[0] != secretBoxVersion {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], additionalData)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// DeriveKey derives a 32-byte key for one purpose, named by info, from
// high-entropy key material (`secrets_key`, the HS256 signing secret or
// the random key in Caddy's storage) with HKDF-SHA256. Different info
// strings give independent keys.
func DeriveKey(material []byte, info string) ([]byte, error) {
	if len(material) < 32 {
		return nil, fmt.Errorf("key material is %d bytes, need at least 32", len(material))
	}
	return hkdf.Key(sha256.New, material, nil, info, KeySize)
}
