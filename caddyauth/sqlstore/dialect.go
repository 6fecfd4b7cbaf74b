package sqlstore

import (
	"embed"
	"io/fs"
)

//go:embed migrations
var migrationFiles embed.FS

// Dialect holds what differs between the SQL databases a Store runs on.
// Use one of the predefined values Postgres and SQLite.
type Dialect struct {
	name string
	// migrations holds the dialect's NNNN_name.sql files.
	migrations fs.FS
	// migrationLock is run first in the migration transaction to keep
	// other nodes from migrating at the same time; "" when the transaction
	// itself already excludes other writers.
	migrationLock string
	// lockRow ends a SELECT of one row that UserForUpdate locks until the
	// transaction ends; "" when the transaction already excludes other
	// writers.
	lockRow string
	// shareRow ends a sub-SELECT of a user row that a refresh rotation
	// holds until its transaction ends: it lets other rotations and
	// writes of the user's columns through and keeps lockRow out, so a
	// revocation that locks the user first waits for rotations in flight
	// (see Store.lockSessions); "" when the transaction already excludes
	// other writers.
	shareRow string
	// commitUnflushed is run in a transaction to let it commit without
	// waiting for a flush to disk; "" when a commit already does not wait
	// for one.
	commitUnflushed string
}

// Name returns the dialect's name ("postgres" or "sqlite").
func (d Dialect) Name() string { return d.name }

func mustSub(dir string) fs.FS {
	sub, err := fs.Sub(migrationFiles, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

var (
	// Postgres is the dialect of PostgreSQL (10 or later). Migrations run
	// under a transaction-scoped advisory lock, so nodes that start together
	// migrate one after the other.
	Postgres = Dialect{
		name:       "postgres",
		migrations: mustSub("migrations/postgres"),
		// The key is the bytes "jwtaauth" read as a big-endian integer.
		migrationLock: "SELECT pg_advisory_xact_lock(7671728451844666472)",
		lockRow:       " FOR UPDATE",
		shareRow:      " FOR KEY SHARE",
		// For this transaction only; the WAL writer flushes it within
		// three times wal_writer_delay (600 ms by default).
		commitUnflushed: "SET LOCAL synchronous_commit = off",
	}

	// SQLite is the dialect of SQLite (3.35 or later). Migrations run in one
	// write transaction, which SQLite already serialises; open the database
	// with immediate transactions (_txlock=immediate with modernc.org/sqlite)
	// so that two processes cannot both read the schema version first. The
	// same holds for every transaction of InTx: BEGIN IMMEDIATE takes the
	// write lock before the first read, which is the row lock
	// UserForUpdate promises (SQLite has no SELECT ... FOR UPDATE). The
	// store opens the database with synchronous(NORMAL) in WAL mode (see
	// caddyauth/sqlite/sqlite.go), where a commit waits for no flush.
	SQLite = Dialect{
		name:       "sqlite",
		migrations: mustSub("migrations/sqlite"),
	}
)
