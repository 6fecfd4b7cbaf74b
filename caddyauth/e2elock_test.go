package caddyauth_test

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Caddy binds its listeners with SO_REUSEPORT, so a second test process
// (another checkout running its tests at the same time) does not get
// "address already in use" on testPort: both bind it and the kernel
// spreads the connections between them, and each sees the other's
// answers. The end-to-end tests therefore take a lock file shared by every
// process on the machine before their first Caddy starts, and keep it
// until the process exits.

var (
	e2eLockOnce sync.Once
	e2eLockErr  error
)

// lockE2EPort waits (up to 10 minutes) until no other test process holds
// the end-to-end lock, then takes it for the rest of this process.
func lockE2EPort(t *testing.T) {
	t.Helper()
	e2eLockOnce.Do(func() {
		path := filepath.Join(os.TempDir(), "caddy-jwt-allauth-e2e-"+testPort+".lock")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			e2eLockErr = err
			return
		}
		deadline := time.Now().Add(10 * time.Minute)
		logged := false
		for {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
			if err == nil {
				return // f stays open: the lock lasts until the process exits
			}
			if time.Now().After(deadline) {
				e2eLockErr = err
				return
			}
			if !logged {
				t.Logf("another test process holds %s; waiting for it", path)
				logged = true
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	if e2eLockErr != nil {
		t.Fatalf("taking the end-to-end test lock: %v", e2eLockErr)
	}
}
