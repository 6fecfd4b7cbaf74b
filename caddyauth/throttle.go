package caddyauth

import (
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Throttle is one request throttle: at most Limit requests per sliding
// Window for one key (a client, a user or a normalised e-mail address),
// counted through the realm's rate limiter (`rate_limit`), so with Redis
// every node shares the counts. A request over the limit is answered 429
// `{"detail": "Request was throttled. Expected available in N seconds."}`
// with `Retry-After: N`, before any password is hashed or any account is
// looked up; throttles keyed by e-mail count unknown and existing
// addresses alike, so the answer does not tell them apart. A client is its
// IPv4 address, or the network of its IPv6 address (the first
// `throttle_ipv6_prefix` bits, default 64: one customer's allocation).
// The names, what each counts and their defaults are listed at
// account.DefaultThrottles (caddyauth/account/throttle.go) and in README.
type Throttle struct {
	// Requests allowed per window. 0 turns the throttle off.
	Limit int `json:"limit"`

	// The sliding window. Required when limit is above 0.
	Window caddy.Duration `json:"window,omitempty"`
}

// coreThrottles converts configured throttles for the core.
func coreThrottles(configured map[string]Throttle) map[string]account.Throttle {
	out := make(map[string]account.Throttle, len(configured))
	for name, t := range configured {
		out[name] = account.Throttle{Limit: t.Limit, Window: time.Duration(t.Window)}
	}
	return out
}
