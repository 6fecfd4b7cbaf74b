// Package redislimit provides the jwt_allauth.rate_limiters.redis module: a
// account.RateLimiter whose counts live in Redis, so that every node of a
// site shares them and a reload keeps them.
package redislimit

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

func init() {
	caddy.RegisterModule(Limiter{})
}

// pool holds one Redis client (and its in-memory fallback) per URL and
// timeout, shared by every module instance and every config generation
// during a reload.
var pool = caddy.NewUsagePool()

// Defaults.
const (
	defaultTimeout   = 100 * time.Millisecond
	defaultKeyPrefix = "jwt_allauth:rl:"
)

// After a failed call, checks go straight to memory for retryInterval
// before Redis is tried again, so an outage costs one timeout per second
// rather than one per request. Warnings about the outage are logged at
// most once per warnInterval.
const (
	retryInterval = time.Second
	warnInterval  = 30 * time.Second
)

// slidingLog is one atomic check: the key is a sorted set of event times
// in microseconds of Redis's own clock (so nodes agree on time). Events
// that left the window are dropped; if limit remain, the answer is
// {0, microseconds until the oldest counted one leaves}; otherwise this
// event is added and the answer is {1, 0}. The key expires with its
// window.
//
// KEYS[1] key; ARGV[1] limit; ARGV[2] window (µs); ARGV[3] unique member.
var slidingLog = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n >= limit then
	if limit <= 0 then
		return {0, window}
	end
	local oldest = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
	return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return {1, 0}
`)

// Limiter counts rate-limit events in Redis with a sliding log per key, the
// same semantics as the default in-memory limiter. When Redis cannot
// answer within the timeout (down, refused, slow, script error), the check
// is decided by an in-memory limiter on this node instead: the request is
// neither failed nor let through unchecked, a warning is logged, and the
// `caddy_jwt_allauth_limiter_fallbacks_total` metric counts it. Per-account
// MFA and login lockouts do not depend on Redis; they live in the store.
//
// Caddyfile, inside the jwt_allauth global option:
//
//	rate_limit redis <url> {
//		timeout <duration>
//		key_prefix <prefix>
//	}
type Limiter struct {
	// The Redis server: `redis://[user:password@]host:port/db`,
	// `rediss://` for TLS, or `unix:///path/to/socket`. Placeholders such
	// as `{env.REDIS_URL}` are expanded; give a URL with a password that
	// way, so that it does not land in Caddy's saved config. The URL is
	// never logged. Required.
	URL string `json:"url,omitempty"`

	// The budget of one check, connection included. When it runs out the
	// check is decided in memory. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Prefix of every Redis key this limiter writes; keys are hashes, never
	// addresses or e-mails. Default: `jwt_allauth:rl:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	conn      *conn
	poolKey   string
	timeout   time.Duration
	prefix    string
	logger    *zap.Logger
	fallbacks prometheus.Counter
	member    string

	holdsFallbacks bool // a reference on the shared counter, until Cleanup
}

// conn is what instances with the same URL share.
type conn struct {
	client   *redis.Client
	memory   account.RateLimiter
	retryAt  atomic.Int64  // unix nanoseconds; Redis is skipped before it
	lastWarn atomic.Int64  // unix nanoseconds of the last warning
	degraded atomic.Bool   // the last call failed
	seq      atomic.Uint64 // makes each event a distinct set member
}

// Destruct closes the client when the last instance lets go of it.
func (c *conn) Destruct() error {
	return c.client.Close()
}

// CaddyModule returns the Caddy module information.
func (Limiter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_allauth.rate_limiters.redis",
		New: func() caddy.Module { return new(Limiter) },
	}
}

// Provision expands the URL, gets (or opens) the shared client and
// registers the fallback metric. It does not contact Redis: a server that
// is down at start-up is a fallback, not a failed config.
func (l *Limiter) Provision(ctx caddy.Context) error {
	l.logger = ctx.Logger()
	l.timeout = time.Duration(l.Timeout)
	if l.timeout <= 0 {
		l.timeout = defaultTimeout
	}
	l.prefix = l.KeyPrefix
	if l.prefix == "" {
		l.prefix = defaultKeyPrefix
	}
	url := caddy.NewReplacer().ReplaceAll(l.URL, "")
	if url == "" {
		return errors.New("redis rate limiter: the URL is empty (after placeholders)")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		// The parse error may quote the URL; do not pass it on.
		return errors.New("redis rate limiter: the URL does not parse (want redis://, rediss:// or unix://)")
	}
	opts.DialTimeout = l.timeout
	opts.ReadTimeout = l.timeout
	opts.WriteTimeout = l.timeout
	opts.PoolTimeout = l.timeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1 // a retry would overrun the budget
	sum := sha256.Sum256([]byte(url + "\x00" + l.timeout.String()))
	l.poolKey = hex.EncodeToString(sum[:])
	val, _, err := pool.LoadOrNew(l.poolKey, func() (caddy.Destructor, error) {
		return &conn{client: redis.NewClient(opts), memory: account.NewMemoryLimiter(time.Now)}, nil
	})
	if err != nil {
		return err
	}
	l.conn = val.(*conn)
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	l.member = hex.EncodeToString(id)
	l.fallbacks, err = acquireFallbacks(ctx.GetMetricsRegistry())
	l.holdsFallbacks = err == nil
	return err
}

// fallbacksKey keeps in pool the one fallback counter every instance
// counts in, whatever its Redis, while any is provisioned: a reload
// provisions the new instance before the old one lets go, so the count
// carries over. (The other keys of pool are hex digests.)
const fallbacksKey = "limiter_fallbacks_total"

// fallbacks is the counter kept under fallbacksKey.
type fallbacks struct{ prometheus.Counter }

// Destruct lets the counter go with the last instance.
func (fallbacks) Destruct() error { return nil }

// acquireFallbacks returns the shared fallback counter, registered in this
// config's registry, and takes a reference that Cleanup gives back.
func acquireFallbacks(reg *prometheus.Registry) (prometheus.Counter, error) {
	val, _, err := pool.LoadOrNew(fallbacksKey, func() (caddy.Destructor, error) {
		return fallbacks{prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "jwt_allauth",
			Name:      "limiter_fallbacks_total",
			Help:      "Rate-limit checks decided in memory because Redis did not answer.",
		})}, nil
	})
	if err != nil {
		return nil, err
	}
	c := val.(fallbacks).Counter
	if reg != nil {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) || are.ExistingCollector != c {
				_, _ = pool.Delete(fallbacksKey)
				return nil, fmt.Errorf("registering metric: %v", err)
			}
		}
	}
	return c, nil
}

// Validate checks the settings.
func (l *Limiter) Validate() error {
	if l.URL == "" {
		return errors.New("redis rate limiter: url is required")
	}
	if l.Timeout < 0 {
		return errors.New("redis rate limiter: timeout must not be negative")
	}
	return nil
}

// Cleanup lets go of the shared client and fallback counter.
func (l *Limiter) Cleanup() error {
	var errs []error
	if l.holdsFallbacks {
		l.holdsFallbacks = false
		_, err := pool.Delete(fallbacksKey)
		errs = append(errs, err)
	}
	if l.poolKey != "" {
		_, err := pool.Delete(l.poolKey)
		l.poolKey = ""
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Allow records one event for key in Redis and reports whether it is
// within limit; when Redis fails, the decision comes from memory.
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	_, ok, wait, err := l.Reserve(ctx, key, limit, window)
	return ok, wait, err
}

// memoryID marks the ids of events the in-memory fallback recorded, so
// that Cancel takes them back there.
const memoryID = "mem:"

// Reserve is Allow returning the id of the event recorded: its member of
// the sorted set, or memoryID and the fallback's id.
func (l *Limiter) Reserve(ctx context.Context, key string, limit int, window time.Duration) (string, bool, time.Duration, error) {
	c := l.conn
	if time.Now().UnixNano() < c.retryAt.Load() {
		return l.fallback(ctx, key, limit, window, nil)
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	member := l.member + ":" + strconv.FormatUint(c.seq.Add(1), 36)
	res, err := slidingLog.Run(cctx, c.client, []string{l.prefix + key}, limit, window.Microseconds(), member).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected script reply %v", res)
	}
	if err != nil {
		if ctx.Err() != nil {
			// The request itself is gone; there is nobody to answer.
			return "", false, 0, ctx.Err()
		}
		l.failed()
		return l.fallback(ctx, key, limit, window, err)
	}
	l.answered()
	if res[0] == 1 {
		return member, true, 0, nil
	}
	return "", false, time.Duration(res[1]) * time.Microsecond, nil
}

// Cancel removes the event id of key, from Redis or from the in-memory
// fallback, whichever recorded it. An event in Redis that cannot be
// reached stays counted until it leaves its window (it errs on the side of
// counting): while Redis is skipped after a failure that is not an error,
// the outage was already logged; a call that fails now is.
func (l *Limiter) Cancel(ctx context.Context, key, id string) error {
	if rest, ok := strings.CutPrefix(id, memoryID); ok {
		return l.conn.memory.Cancel(ctx, key, rest)
	}
	if id == "" || time.Now().UnixNano() < l.conn.retryAt.Load() {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if err := l.conn.client.ZRem(cctx, l.prefix+key, id).Err(); err != nil {
		if ctx.Err() == nil {
			l.failed()
		}
		return fmt.Errorf("redis rate limiter: cancelling an event: %w", err)
	}
	l.answered()
	return nil
}

// failed notes a Redis call that failed: checks go to memory for
// retryInterval.
func (l *Limiter) failed() {
	l.conn.retryAt.Store(time.Now().Add(retryInterval).UnixNano())
	l.conn.degraded.Store(true)
}

// answered notes a Redis call that succeeded, and logs the recovery.
func (l *Limiter) answered() {
	if l.conn.degraded.CompareAndSwap(true, false) {
		l.logger.Info("Redis answers again; rate limits are shared across nodes again")
	}
}

// fallback decides in memory, counts it and warns (at most once per
// warnInterval). cause is nil while Redis is being skipped after a failure.
func (l *Limiter) fallback(ctx context.Context, key string, limit int, window time.Duration, cause error) (string, bool, time.Duration, error) {
	l.fallbacks.Inc()
	if cause != nil {
		now := time.Now().UnixNano()
		last := l.conn.lastWarn.Load()
		if now-last >= int64(warnInterval) && l.conn.lastWarn.CompareAndSwap(last, now) {
			l.logger.Warn("Redis unavailable; rate limits are counted in memory on this node until it answers again",
				zap.Error(cause), zap.Duration("timeout", l.timeout))
		}
	}
	id, ok, wait, err := l.conn.memory.Reserve(ctx, key, limit, window)
	if ok {
		id = memoryID + id
	}
	return id, ok, wait, err
}

// UnmarshalCaddyfile reads `redis <url> { timeout <d>; key_prefix <p> }`;
// the dispenser starts at the module name.
func (l *Limiter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if !d.NextArg() {
		return d.ArgErr()
	}
	l.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("timeout: %v", err)
			}
			l.Timeout = caddy.Duration(dur)
		case "key_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			l.KeyPrefix = d.Val()
		default:
			return d.Errf("unrecognized redis rate limiter option '%s'", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}

// Interface guards
var (
	_ account.RateLimiter   = (*Limiter)(nil)
	_ caddy.Provisioner     = (*Limiter)(nil)
	_ caddy.Validator       = (*Limiter)(nil)
	_ caddy.CleanerUpper    = (*Limiter)(nil)
	_ caddyfile.Unmarshaler = (*Limiter)(nil)
	_ caddy.Destructor      = (*conn)(nil)
)
