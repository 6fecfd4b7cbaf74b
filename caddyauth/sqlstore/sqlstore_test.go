package sqlstore

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestSQLiteDollarParameters checks that modernc.org/sqlite binds $N
// parameters by number, even out of order and repeated, which the shared
// SQL relies on.
func TestSQLiteDollarParameters(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "p.db"))
	var a, b, c string
	err := db.QueryRow(`SELECT $2, $1, $2 || $1`, "one", "two").Scan(&a, &b, &c)
	if err != nil {
		t.Fatal(err)
	}
	if a != "two" || b != "one" || c != "twoone" {
		t.Fatalf("got %q %q %q", a, b, c)
	}
}

func TestPlaceholders(t *testing.T) {
	if got := placeholders(2, 3); got != "$2, $3, $4" {
		t.Fatalf("placeholders(2, 3) = %q", got)
	}
}

func TestMigrationList(t *testing.T) {
	for _, d := range []Dialect{Postgres, SQLite} {
		list, err := d.migrationList()
		if err != nil {
			t.Fatalf("%s: %v", d.Name(), err)
		}
		if len(list) == 0 || list[0].version != 1 {
			t.Fatalf("%s: migrations %+v", d.Name(), list)
		}
		for i := 1; i < len(list); i++ {
			if list[i].version <= list[i-1].version {
				t.Fatalf("%s: migrations out of order", d.Name())
			}
		}
	}
	pg, _ := Postgres.migrationList()
	lite, _ := SQLite.migrationList()
	if len(pg) != len(lite) {
		t.Fatalf("postgres has %d migrations, sqlite %d", len(pg), len(lite))
	}
	for i := range pg {
		if pg[i].version != lite[i].version {
			t.Fatalf("migration %d: postgres version %d, sqlite %d", i, pg[i].version, lite[i].version)
		}
	}
}

// TestSQLiteMigrateConcurrently migrates one file from several connection
// pools at once, as several processes starting together would.
func TestSQLiteMigrateConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	const nodes = 6
	dbs := make([]*sql.DB, nodes)
	for i := range dbs {
		dbs[i] = openSQLite(t, path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = Migrate(ctx, dbs[i], SQLite)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	list, err := SQLite.migrationList()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dbs[0].QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(list) || len(list) < 2 {
		t.Fatalf("schema_migrations has %d rows (%v), want one per migration (%d)", n, err, len(list))
	}
	// The schema is usable.
	s := New(dbs[0], SQLite)
	if _, err := s.ListUsers(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateUnsetDialect(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "u.db"))
	if err := Migrate(context.Background(), db, Dialect{}); err == nil {
		t.Fatal("Migrate with a zero Dialect succeeded")
	}
}
