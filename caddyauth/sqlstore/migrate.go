package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migration is one versioned schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the dialect's migrations in version order. File names
// are NNNN_description.sql; NNNN is the version.
func (d Dialect) migrationList() ([]migration, error) {
	entries, err := fs.ReadDir(d.migrations, ".")
	if err != nil {
		return nil, err
	}
	var list []migration
	seen := make(map[int]string)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(prefix)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version %q", name, prefix)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s have the same version", other, name)
		}
		seen[v] = name
		body, err := fs.ReadFile(d.migrations, name)
		if err != nil {
			return nil, err
		}
		list = append(list, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].version < list[j].version })
	return list, nil
}

// Migrate brings the schema of db up to date: it applies, in version order
// and in one transaction, every migration of the dialect not yet recorded in
// the schema_migrations table. It is safe to call from several nodes at
// once: with PostgreSQL the transaction holds an advisory lock, with SQLite
// the write transaction excludes other writers.
func Migrate(ctx context.Context, db *sql.DB, d Dialect) error {
	if d.migrations == nil {
		return fmt.Errorf("migrating: dialect not set")
	}
	list, err := d.migrationList()
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating: beginning transaction: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit

	if d.migrationLock != "" {
		if _, err := tx.ExecContext(ctx, d.migrationLock); err != nil {
			return fmt.Errorf("migrating: taking lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied BIGINT  NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrating: creating schema_migrations: %w", err)
	}

	applied := make(map[int]bool)
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrating: reading schema_migrations: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrating: reading schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrating: reading schema_migrations: %w", err)
	}

	for _, m := range list {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migrating: applying %s: %w", m.name, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, applied) VALUES ($1, $2)`,
			m.version, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("migrating: recording %s: %w", m.name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating: committing: %w", err)
	}
	return nil
}
