// Package sqlite provides the jwt_allauth.stores.sqlite module:
// an account.Store kept in a local SQLite file, for single-node sites.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlmodule"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlstore"
)

func init() {
	caddy.RegisterModule(Store{})
}

// pool holds one open database per file, shared by every module instance
// (and every config generation during a reload) that uses it.
var pool = sqlmodule.NewPool()

// busyTimeout is how long SQLite waits for a lock held by another process
// (for example a backup or the sqlite3 shell) before giving up.
const busyTimeout = 5 * time.Second

// Store keeps accounts, sessions and MFA factors in an SQLite database
// file. The schema is created and upgraded automatically when the module is
// provisioned. SQLite suits a single Caddy instance; use the postgres store
// when several nodes serve the same site.
type Store struct {
	// Path is the database file. It is created, with its directory, when
	// missing. Caddy placeholders are expanded. Default:
	// jwt_allauth/auth.db in Caddy's data directory.
	Path string `json:"path,omitempty"`

	// QueryTimeout bounds every store operation, waiting for the
	// database included. Default: 5s.
	QueryTimeout caddy.Duration `json:"query_timeout,omitempty"`

	*sqlstore.Store `json:"-"`

	poolKey string
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Store) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_allauth.stores.sqlite",
		New: func() caddy.Module { return new(Store) },
	}
}

// Provision opens (or reuses) the database and migrates its schema.
func (s *Store) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	path := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(s.Path, ""))
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "jwt_allauth", "auth.db")
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("sqlite store: %w", err)
	}
	timeout := sqlmodule.QueryTimeout(s.QueryTimeout)

	key := "jwt_allauth.sqlite:" + path
	store, loaded, err := pool.Acquire(key, sqlstore.SQLite, timeout, func() (*sql.DB, error) {
		return open(ctx, path)
	})
	if err != nil {
		return err
	}
	s.poolKey = key
	s.Store = store
	s.logger.Debug("sqlite store ready", zap.String("path", path), zap.Bool("reused", loaded))
	return nil
}

// dsn returns the modernc.org/sqlite connection string for path.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// BEGIN IMMEDIATE takes the write lock when a transaction starts, so
	// another process cannot make it fail half way with SQLITE_BUSY when
	// it first writes after reading.
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// open opens the database at path and migrates its schema.
func open(ctx context.Context, path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite store: creating directory: %w", err)
	}
	db := sql.OpenDB(&connector{dsn: dsn(path)})
	// One connection. SQLite allows a single writer at a time; with
	// several connections, concurrent writers would wait on SQLite's busy
	// handler, which polls, ignores the request's context, and gives up
	// with "database is locked" under load. With one connection, writers
	// (and readers) queue in database/sql instead, fairly and bounded by
	// each call's deadline, and SQLITE_BUSY can only come from another
	// process. Queries are short, so serialising reads costs little on
	// the single node SQLite is meant for.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	mctx, cancel := context.WithTimeout(ctx, sqlstore.MigrateTimeout)
	defer cancel()
	if err := db.PingContext(mctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite store: opening %s: %w", path, err)
	}
	var fk bool
	if err := db.QueryRowContext(mctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || !fk {
		db.Close()
		return nil, fmt.Errorf("sqlite store: %s: foreign keys could not be enabled (%v)", path, err)
	}
	if err := sqlstore.Migrate(mctx, db, sqlstore.SQLite); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite store: %s: %w", path, err)
	}
	return db, nil
}

// Validate checks the configuration.
func (s *Store) Validate() error {
	return sqlmodule.ValidateQueryTimeout("sqlite", s.QueryTimeout)
}

// Cleanup releases the database if this instance took it; it is closed
// when its last user releases it.
func (s *Store) Cleanup() error {
	return pool.Release(&s.poolKey)
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store sqlite [<path>] {
//		query_timeout <duration>
//	}
//
// The path and the block are optional. The dispenser may start at the
// module name (as caddyfile.UnmarshalModule provides it) or just after it.
func (s *Store) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return sqlmodule.UnmarshalCaddyfile(d, "sqlite", false, &s.Path, &s.QueryTimeout)
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
