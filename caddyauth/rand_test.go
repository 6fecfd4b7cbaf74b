package caddyauth

import "math/rand/v2"

// testRand returns a deterministic random source for tests.
func testRand(seed byte) *rand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}
