package otpcode

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Recovery codes: how many a user gets, and their size. Ten bytes are 80
// bits, exactly 16 Crockford base32 characters.
const (
	recoveryCodeCount = 10
	recoveryCodeBytes = 10
	recoveryCodeChars = 16
)

// crockfordAlphabet is Douglas Crockford's base32 alphabet: digits and
// upper-case letters without I, L, O and U.
const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// generateRecoveryCodes returns ten codes of 80 random bits each, read from
// r, formatted for people as XXXX-XXXX-XXXX-XXXX.
func generateRecoveryCodes(r io.Reader) ([]string, error) {
	codes := make([]string, recoveryCodeCount)
	buf := make([]byte, recoveryCodeBytes)
	for i := range codes {
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("reading recovery code: %w", err)
		}
		codes[i] = formatRecoveryCode(crockfordEncode(buf))
	}
	return codes, nil
}

// crockfordEncode encodes 10 bytes as 16 characters, five bits at a time,
// most significant first.
func crockfordEncode(b []byte) string {
	var out strings.Builder
	var acc uint64
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint64(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			out.WriteByte(crockfordAlphabet[(acc>>bits)&31])
		}
	}
	if bits > 0 {
		out.WriteByte(crockfordAlphabet[(acc<<(5-bits))&31])
	}
	return out.String()
}

// formatRecoveryCode puts a hyphen after every fourth character.
func formatRecoveryCode(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NormaliseRecoveryCode turns what a user typed into the canonical 16
// characters: upper case, without spaces and hyphens, with O read as 0 and
// I and L as 1 (Crockford's decoding rules). ok is false when the result
// is not 16 characters of the alphabet.
func NormaliseRecoveryCode(s string) (code string, ok bool) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch r {
		case ' ', '-', '\t':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		if r > 0x7f || !strings.ContainsRune(crockfordAlphabet, r) {
			return "", false
		}
		b.WriteRune(r)
		if b.Len() > recoveryCodeChars {
			return "", false
		}
	}
	if b.Len() != recoveryCodeChars {
		return "", false
	}
	return b.String(), true
}

// HashRecoveryCode returns the stored form of a normalised code: the hex
// SHA-256 digest. A fast hash is enough here, unlike for passwords: each
// code has 80 random bits, so a stolen table cannot be reversed by
// guessing, and a slow hash would only make each check costlier.
func HashRecoveryCode(normalised string) string {
	sum := sha256.Sum256([]byte(normalised))
	return hex.EncodeToString(sum[:])
}

// NewRecoveryCodes makes a fresh set of recovery codes and their stored
// hashes.
func NewRecoveryCodes(r io.Reader) (codes, hashes []string, err error) {
	codes, err = generateRecoveryCodes(r)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range codes {
		n, _ := NormaliseRecoveryCode(c)
		hashes = append(hashes, HashRecoveryCode(n))
	}
	return codes, hashes, nil
}
