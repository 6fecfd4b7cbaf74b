// Package postgres provides the jwt_allauth.stores.postgres module:
// an account.Store kept in a PostgreSQL database.
package postgres

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlmodule"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlstore"
)

func init() {
	caddy.RegisterModule(Store{})
}

// pool holds one database connection pool per DSN, shared by every module
// instance (and every config generation during a reload) that uses it.
var pool = sqlmodule.NewPool()

// Store keeps accounts, sessions and MFA factors in PostgreSQL. The schema
// is created and upgraded automatically when the module is provisioned.
// Module instances with the same DSN share one connection pool, which a
// config reload keeps open.
type Store struct {
	// DSN is the connection string, as a URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or as
	// key=value pairs. Caddy placeholders such as {env.DATABASE_URL} are
	// expanded. Required.
	DSN string `json:"dsn,omitempty"`

	// QueryTimeout bounds every store operation, so that an unreachable
	// database fails a request instead of hanging it. It also bounds the
	// first connection attempt. Default: 5s.
	QueryTimeout caddy.Duration `json:"query_timeout,omitempty"`

	*sqlstore.Store `json:"-"`

	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_allauth.stores.postgres",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision expands the DSN, then opens (or reuses) the connection pool,
// checks that the server answers and migrates the schema.
func (s *Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	dsn := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(s.DSN, ""))
	if dsn == "" {
		return errors.New("postgres store: dsn is required")
	}
	timeout := sqlmodule.QueryTimeout(s.QueryTimeout)

	sum := sha256.Sum256([]byte(dsn))
	key := "jwt_allauth.postgres:" + hex.EncodeToString(sum[:])
	store, loaded, err := pool.Acquire(key, sqlstore.Postgres, timeout, func() (*sql.DB, error) {
		return open(ctx, dsn, timeout)
	})
	if err != nil {
		return err
	}
	s.poolKey = key
	s.Store = store
	s.logger.Debug("postgres store ready",
		zap.String("pool", key[len(key)-12:]), zap.Bool("reused", loaded))
	return nil
}

// open opens a connection pool, pings the server and migrates the schema.
// Its errors never contain the DSN or its password.
// maxOpenConns caps one node's connections to PostgreSQL (the server's
// default max_connections is 100).
const maxOpenConns = 20

func open(ctx context.Context, dsn string, timeout time.Duration) (*sql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: invalid dsn: %s", sanitize(err, dsn, ""))
	}
	password := cfg.Password
	db := stdlib.OpenDB(*cfg)
	// database/sql keeps only two idle connections by default, which
	// under steady load means opening and closing connections all the
	// time. Keep a few more, and let idle ones go after a while so that a
	// quiet node does not hold server slots. Open connections are capped
	// so that a burst queues here, under each call's deadline, instead of
	// exhausting the server's max_connections for every node sharing it.
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)

	pingCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to postgres: %s", sanitize(err, dsn, password))
	}

	migCtx, cancel := context.WithTimeout(ctx, sqlstore.MigrateTimeout)
	defer cancel()
	if err := sqlstore.Migrate(migCtx, db, sqlstore.Postgres); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres store: %s", sanitize(err, dsn, password))
	}
	return db, nil
}

// sanitize describes err without the DSN or the password, which driver
// error messages may quote.
func sanitize(err error, dsn, password string) string {
	var pgErr *pgconn.PgError
	var netErr net.Error
	var msg string
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		msg = "timed out"
	case errors.As(err, &pgErr):
		msg = pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	case errors.As(err, &netErr):
		msg = netErr.Error()
	default:
		msg = err.Error()
	}
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "[dsn]")
	}
	if password != "" {
		msg = strings.ReplaceAll(msg, password, "[redacted]")
	}
	return msg
}

// Validate checks the configuration.
func (s *Store) Validate() error {
	return sqlmodule.ValidateQueryTimeout("postgres", s.QueryTimeout)
}

// Cleanup releases the connection pool if this instance took it; the pool
// is closed when its last user releases it.
func (s *Store) Cleanup() error {
	return pool.Release(&s.poolKey)
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store postgres <dsn> {
//		query_timeout <duration>
//	}
//
// The block is optional. The dispenser may start at the module name (as
// caddyfile.UnmarshalModule provides it) or just after it.
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return sqlmodule.UnmarshalCaddyfile(d, "postgres", true, &s.DSN, &s.QueryTimeout)
}

// Interface guards.
var (
	_ caddy.Module          = (*Store)(nil)
	_ caddy.Provisioner     = (*Store)(nil)
	_ caddy.Validator       = (*Store)(nil)
	_ caddy.CleanerUpper    = (*Store)(nil)
	_ caddyfile.Unmarshaler = (*Store)(nil)
	_ account.Store         = (*Store)(nil)
)
