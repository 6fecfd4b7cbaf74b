// Package sqlmodule is what the Caddy store modules built on sqlstore
// (postgres, sqlite) have in common: the pool of open databases they share
// across module instances and config reloads, and the query_timeout
// option. It keeps Caddy out of sqlstore itself.
package sqlmodule

import (
	"database/sql"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlstore"
)

// Pool holds one open database per key, shared by every module instance
// (and every config generation during a reload) that uses it. A database
// is closed when its last user releases it.
type Pool struct {
	usage *caddy.UsagePool
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{usage: caddy.NewUsagePool()} }

// pooledDB is the value kept in the usage pool.
type pooledDB struct {
	db *sql.DB
}

// Destruct closes the database once no module instance uses it.
func (p *pooledDB) Destruct() error { return p.db.Close() }

// Acquire returns a Store of the given dialect on the database kept under
// key, bounded by queryTimeout (see QueryTimeout). When no instance holds
// that database yet, open opens it (and readies its schema). loaded tells
// whether the database was already open. Each successful Acquire takes a
// reference that Release gives back.
func (p *Pool) Acquire(key string, dialect sqlstore.Dialect, queryTimeout time.Duration, open func() (*sql.DB, error)) (s *sqlstore.Store, loaded bool, err error) {
	val, loaded, err := p.usage.LoadOrNew(key, func() (caddy.Destructor, error) {
		db, err := open()
		if err != nil {
			return nil, err
		}
		return &pooledDB{db: db}, nil
	})
	if err != nil {
		return nil, false, err
	}
	s = sqlstore.New(val.(*pooledDB).db, dialect)
	s.QueryTimeout = queryTimeout
	return s, loaded, nil
}

// Release gives back the reference of an Acquire whose key *lease holds,
// if any, and clears *lease, so that releasing twice releases nothing.
func (p *Pool) Release(lease *string) error {
	if *lease == "" {
		return nil
	}
	_, err := p.usage.Delete(*lease)
	*lease = ""
	return err
}

// QueryTimeout returns the configured query timeout, or sqlstore.DefaultQueryTimeout
// when it is not set.
func QueryTimeout(configured caddy.Duration) time.Duration {
	if configured <= 0 {
		return sqlstore.DefaultQueryTimeout
	}
	return time.Duration(configured)
}

// ValidateQueryTimeout checks the query_timeout option of the module
// called name ("postgres", "sqlite").
func ValidateQueryTimeout(name string, configured caddy.Duration) error {
	if configured < 0 {
		return errors.New(name + " store: query_timeout must not be negative")
	}
	return nil
}

// UnmarshalCaddyfile reads a store module's Caddyfile tokens:
//
//	<name> [<arg>] {
//		query_timeout <duration>
//	}
//
// The argument goes to *arg; when argRequired, a missing one is an error.
// The block is optional. The dispenser may start at the module name (as
// caddyfile.UnmarshalModule provides it) or just after it.
func UnmarshalCaddyfile(d *caddyfile.Dispenser, name string, argRequired bool, arg *string, queryTimeout *caddy.Duration) error {
	nesting := d.Nesting()
	if d.Next() && d.Val() != name {
		d.Prev()
	}
	if d.NextArg() {
		*arg = d.Val()
	} else if argRequired {
		return d.ArgErr()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(nesting) {
		switch d.Val() {
		case "query_timeout":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("parsing query_timeout: %v", err)
			}
			*queryTimeout = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized %s store option %q", name, d.Val())
		}
	}
	return nil
}

// Interface guard.
var _ caddy.Destructor = (*pooledDB)(nil)
