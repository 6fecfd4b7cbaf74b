package caddyauth

import (
	"context"
	"time"
)

// RateLimiter counts events per key in a fixed window. Allow records one
// event and reports whether it is within limit; when it is not, retryAfter
// says when the oldest counted event leaves the window.
type RateLimiter interface {
	Allow(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
}
