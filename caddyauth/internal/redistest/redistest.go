// Package redistest finds and starts the Redis servers the tests use: the
// shared one named by URLEnv, and private redis-server processes that a
// test may stop.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// URLEnv names the variable with the URL of a test Redis. Without it the
// tests that need Redis are skipped; with it an unreachable Redis fails
// them.
const URLEnv = "JWT_ALLAUTH_TEST_REDIS_URL"

// URL returns the URL in URLEnv after checking that the Redis there
// answers; it skips the test when URLEnv is not set.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(URLEnv)
	if url == "" {
		t.Skipf("%s is not set; skipping the tests against a real Redis", URLEnv)
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("%s does not parse: %v", URLEnv, err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis from %s is unreachable: %v", URLEnv, err)
	}
	return url
}

// Start runs a private redis-server on the loopback port (0: a free one)
// and returns its port and a function that kills it, which also runs
// when the test ends. It skips the test when redis-server is not
// installed.
func Start(t testing.TB, port int) (int, func()) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--protected-mode", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(stop)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for range 100 {
		if c.Ping(context.Background()).Err() == nil {
			return port, stop
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	t.Fatalf("private redis-server on port %d did not come up", port)
	return 0, nil
}
