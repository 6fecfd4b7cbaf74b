// Package passwords hashes and verifies passwords and applies the password
// rules: argon2id PHC strings for new hashes, bcrypt and Django's formats
// verified for imported users, and Django's validators (length, numeric,
// similar to the address, common). It is pure; how many hashes may run at
// once is its callers' concern.
package passwords

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters of new hashes (DESIGN.md decision 7, the OWASP
// minimum: 19 MiB, two passes, one lane).
const (
	argon2Memory  = 19 * 1024 // KiB
	argon2Time    = 2
	argon2Threads = 1
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Limits on the parameters of stored hashes we agree to verify, so that an
// imported or tampered row cannot make one login cost minutes or gigabytes.
const (
	maxArgon2Memory  = 256 * 1024 // KiB
	maxArgon2Time    = 16
	maxArgon2Threads = 16
	maxPBKDF2Iter    = 4_000_000 // Django 5.2 writes 1,000,000.
	maxBcryptCost    = 15        // Django writes 12.
)

// dummyHash is verified against when there is no real hash to verify (an
// unknown e-mail address, an account without a usable password), so that
// such a login costs the same argon2id work as a real one. It is a
// well-formed hash with the current parameters whose salt and key are
// random bytes, so no known password matches it.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$Dmy5gW0cwxX2Rc5+v9OPRQ$rRVSaQ3U6hr6n0t1eG2Jx4q8oYgHRe0PFmmvZjV7Y1s"

// Hash returns the argon2id PHC string of password with a salt read from
// rand.
func Hash(password string, rand io.Reader) (string, error) {
	salt := make([]byte, argon2SaltLen)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("reading salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argon2Time, argon2Memory, argon2Threads, argon2KeyLen)
	return formatArgon2id(argon2Params{memory: argon2Memory, time: argon2Time, threads: argon2Threads}, salt, key), nil
}

// Verify reports whether password matches encoded, and whether encoded
// should be replaced by a fresh hash (it is not argon2id with the current
// parameters). It verifies argon2id PHC strings, bcrypt ($2a$, $2b$, $2y$)
// and Django's pbkdf2_sha256, pbkdf2_sha1, argon2, bcrypt and
// bcrypt_sha256 formats. An empty, unusable ("!..." as Django writes it)
// or unrecognised hash never matches, but still costs one argon2id
// verification, as does VerifyDummy.
func Verify(password, encoded string) (ok, needsRehash bool) {
	ok, current, known := verifyEncoded(password, encoded)
	if !known {
		verifyEncoded(password, dummyHash)
		return false, false
	}
	return ok, ok && !current
}

// VerifyDummy costs what verifying a current argon2id hash costs and never
// matches: for an unknown address, so that the answer takes as long as for
// a known one.
func VerifyDummy(password string) {
	verifyEncoded(password, dummyHash)
}

// verifyEncoded checks password against encoded. known is false when
// encoded is in no format we understand (or its parameters are out of
// bounds); current is true when it is argon2id with today's parameters.
func verifyEncoded(password, encoded string) (ok, current, known bool) {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		return verifyArgon2id(password, encoded)
	case strings.HasPrefix(encoded, "argon2$argon2id$"):
		// Django's Argon2PasswordHasher: "argon2" + the PHC string.
		ok, _, known = verifyArgon2id(password, strings.TrimPrefix(encoded, "argon2"))
		return ok, false, known
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		return verifyBcrypt([]byte(password), encoded), false, true
	case strings.HasPrefix(encoded, "bcrypt$$2"):
		return verifyBcrypt([]byte(password), strings.TrimPrefix(encoded, "bcrypt$")), false, true
	case strings.HasPrefix(encoded, "bcrypt_sha256$$2"):
		// Django pre-hashes with SHA-256 and passes the hex digest to bcrypt.
		sum := sha256.Sum256([]byte(password))
		pre := []byte(hex.EncodeToString(sum[:]))
		return verifyBcrypt(pre, strings.TrimPrefix(encoded, "bcrypt_sha256$")), false, true
	case strings.HasPrefix(encoded, "pbkdf2_sha256$"):
		return verifyPBKDF2(sha256.New, password, strings.TrimPrefix(encoded, "pbkdf2_sha256$"))
	case strings.HasPrefix(encoded, "pbkdf2_sha1$"):
		return verifyPBKDF2(sha1.New, password, strings.TrimPrefix(encoded, "pbkdf2_sha1$"))
	}
	return false, false, false
}

// argon2Params are the cost parameters of an argon2id hash.
type argon2Params struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
}

// formatArgon2id returns the PHC string form
// $argon2id$v=19$m=<memory>,t=<time>,p=<threads>$<salt>$<key> with
// unpadded standard base64.
func formatArgon2id(p argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// parseArgon2id splits a PHC argon2id string. It refuses other versions
// and parameters beyond the verification limits.
func parseArgon2id(encoded string) (p argon2Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errors.New("unsupported argon2 version")
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return p, nil, nil, errors.New("argon2 parameters malformed")
	}
	var vals [3]uint64
	for i, name := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(params[i], name)
		if !ok {
			return p, nil, nil, errors.New("argon2 parameters malformed")
		}
		if vals[i], err = strconv.ParseUint(v, 10, 32); err != nil {
			return p, nil, nil, errors.New("argon2 parameters malformed")
		}
	}
	if vals[0] < 8 || vals[0] > maxArgon2Memory || vals[1] < 1 || vals[1] > maxArgon2Time || vals[2] < 1 || vals[2] > maxArgon2Threads {
		return p, nil, nil, errors.New("argon2 parameters out of bounds")
	}
	p = argon2Params{memory: uint32(vals[0]), time: uint32(vals[1]), threads: uint8(vals[2])}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("argon2 salt malformed")
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, errors.New("argon2 hash malformed")
	}
	return p, salt, key, nil
}

func verifyArgon2id(password, encoded string) (ok, current, known bool) {
	p, salt, key, err := parseArgon2id(encoded)
	if err != nil {
		return false, false, false
	}
	got := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, uint32(len(key)))
	ok = subtle.ConstantTimeCompare(got, key) == 1
	current = p == argon2Params{memory: argon2Memory, time: argon2Time, threads: argon2Threads} &&
		len(salt) == argon2SaltLen && len(key) == argon2KeyLen
	return ok, current, true
}

// verifyBcrypt compares in constant time (bcrypt does). bcrypt only reads
// the first 72 bytes of a password and CompareHashAndPassword silently
// ignores the rest, so a longer password never matches: it would otherwise
// be truncated.
func verifyBcrypt(password []byte, encoded string) bool {
	if len(password) > 72 {
		return false
	}
	if cost, err := bcrypt.Cost([]byte(encoded)); err != nil || cost > maxBcryptCost {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(encoded), password) == nil
}

// verifyPBKDF2 checks Django's "<iterations>$<salt>$<base64 hash>" (the
// part after the algorithm name).
func verifyPBKDF2[H hash.Hash](h func() H, password, rest string) (ok, current, known bool) {
	parts := strings.Split(rest, "$")
	if len(parts) != 3 || parts[1] == "" {
		return false, false, false
	}
	iter, err := strconv.Atoi(parts[0])
	if err != nil || iter < 1 || iter > maxPBKDF2Iter {
		return false, false, false
	}
	want, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(want) < 16 {
		return false, false, false
	}
	got, err := pbkdf2.Key(h, password, []byte(parts[1]), iter, len(want))
	if err != nil {
		return false, false, true
	}
	return subtle.ConstantTimeCompare(got, want) == 1, false, true
}
