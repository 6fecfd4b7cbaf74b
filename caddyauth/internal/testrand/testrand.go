// Package testrand gives tests a deterministic random source, so that keys,
// salts and nonces made from it are the same on every run.
package testrand

import "math/rand/v2"

// New returns a ChaCha8 stream whose seed is seed followed by zeros.
func New(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}
