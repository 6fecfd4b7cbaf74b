package account_test

import (
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/limitertest"
)

// The in-memory limiter reserves and cancels as the Redis one does
// (caddyauth/redislimit/redislimit_test.go runs the same checks).
func TestMemoryLimiterReserveAndCancel(t *testing.T) {
	limitertest.ReserveAndCancel(t, account.NewMemoryLimiter(time.Now))
}
