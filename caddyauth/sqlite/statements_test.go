package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The kept statements of statements.go against what could leave one in a
// bad state: the same query run again while its rows are open, inside a
// transaction and out, an error or a cancelled context in the middle of
// a statement, a schema change, the bound on kept statements while rows
// are open, and a connection database/sql throws away. Every query runs
// on the database's one connection, so each reuses what the one before
// it left.

// keptDB opens a database as the store does (one connection, migrated)
// with a table of n numbered rows.
func keptDB(t *testing.T, n int) *sql.DB {
	t.Helper()
	db, err := open(context.Background(), filepath.Join(t.TempDir(), "kept.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE nums (n INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE)`); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := db.Exec(`INSERT INTO nums (n, label) VALUES ($1, $2)`, i, fmt.Sprint("n", i)); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// queryer is what a database and a transaction have in common here.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const numsFrom = `SELECT n FROM nums WHERE n >= $1 ORDER BY n`

// numbers reads every row of numsFrom from first.
func numbers(t *testing.T, q queryer, first int) []int {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), numsFrom, first)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func span(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// nested runs numsFrom from 1 and, for each of its rows, numsFrom again
// from that row while the outer rows are open: the inner query must not
// take over the outer one's statement.
func nested(t *testing.T, q queryer) {
	t.Helper()
	rows, err := q.QueryContext(context.Background(), numsFrom, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var outer []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		outer = append(outer, n)
		if got := numbers(t, q, n); !slices.Equal(got, span(n, 5)) {
			t.Fatalf("inner query from %d = %v", n, got)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(outer, span(1, 5)) {
		t.Fatalf("outer query = %v", outer)
	}
}

func TestKeptStatementsNested(t *testing.T) {
	db := keptDB(t, 5)
	// Outside a transaction, on the connection held (the database has
	// one), then inside one.
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nested(t, conn)
	conn.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	nested(t, tx)
	// A write inside the transaction while a kept query's rows are open,
	// then the same query again: it sees the write.
	rows, err := tx.Query(numsFrom, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	if _, err := tx.Exec(`INSERT INTO nums (n, label) VALUES ($1, $2)`, 6, "n6"); err != nil {
		t.Fatal(err)
	}
	if got := numbers(t, tx, 4); !slices.Equal(got, span(4, 6)) {
		t.Fatalf("inside the transaction, with rows open = %v", got)
	}
	rows.Close()
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := numbers(t, db, 1); !slices.Equal(got, span(1, 5)) {
		t.Fatalf("after the rollback = %v", got)
	}
	// A transaction committed while the same statement was used in it
	// and outside before.
	tx, err = db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO nums (n, label) VALUES ($1, $2)`, 6, "n6"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := numbers(t, db, 5); !slices.Equal(got, span(5, 6)) {
		t.Fatalf("after the commit = %v", got)
	}
}

func TestKeptStatementsAfterErrors(t *testing.T) {
	db := keptDB(t, 5)
	const insert = `INSERT INTO nums (n, label) VALUES ($1, $2)`
	// A constraint violation, then the same statement with good values.
	if _, err := db.Exec(insert, 7, "n1"); err == nil {
		t.Fatal("duplicate label inserted")
	}
	if _, err := db.Exec(insert, 7, "n7"); err != nil {
		t.Fatalf("after a failed insert: %v", err)
	}
	// A query that fails while stepping (integer overflow), then the
	// same query with an argument that does not overflow.
	const abs = `SELECT abs($1)`
	var v int64
	if err := db.QueryRow(abs, int64(-1)<<63).Scan(&v); err == nil {
		t.Fatal("abs of the smallest integer did not fail")
	}
	if err := db.QueryRow(abs, int64(-3)).Scan(&v); err != nil || v != 3 {
		t.Fatalf("after a failed step: %d, %v", v, err)
	}
	// A failure in a transaction that is rolled back.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(insert, 8, "n2"); err == nil {
		t.Fatal("duplicate label inserted")
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(insert, 8, "n8"); err != nil {
		t.Fatalf("after a rolled back failure: %v", err)
	}
	// Too few arguments, then the right number.
	if _, err := db.Exec(insert, 9); err == nil {
		t.Fatal("insert with one argument of two")
	}
	if _, err := db.Exec(insert, 9, "n9"); err != nil {
		t.Fatalf("after too few arguments: %v", err)
	}
	if got := numbers(t, db, 1); !slices.Equal(got, []int{1, 2, 3, 4, 5, 7, 8, 9}) {
		t.Fatalf("rows = %v", got)
	}
}

// slow counts to a billion: long enough for any context to run out.
const slow = `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000000000) SELECT count(*) FROM c WHERE i > $1`

func TestKeptStatementsCancelled(t *testing.T) {
	db := keptDB(t, 5)
	for round := range 3 {
		// Cancelled in the middle of a step, by a deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		var n int64
		err := db.QueryRowContext(ctx, slow, 0).Scan(&n)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: slow query = %d, %v, want the deadline", round, n, err)
		}
		// The same statement with a bound that ends it at once, and
		// another.
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM nums WHERE n > $1`, 2).Scan(&n)
		cancel()
		if err != nil || n != 3 {
			t.Fatalf("round %d: after the cancel: %d, %v", round, n, err)
		}
		if got := numbers(t, db, 2); !slices.Equal(got, span(2, 5)) {
			t.Fatalf("round %d: after the cancel = %v", round, got)
		}

		// Cancelled between two rows, with the statement's rows open.
		ctx, cancel = context.WithCancel(context.Background())
		rows, err := db.QueryContext(ctx, numsFrom, 1)
		if err != nil {
			t.Fatal(err)
		}
		if !rows.Next() {
			t.Fatal("no row")
		}
		cancel()
		for rows.Next() {
		}
		rows.Close()
		if got := numbers(t, db, 3); !slices.Equal(got, span(3, 5)) {
			t.Fatalf("round %d: after a cancel between rows = %v", round, got)
		}

		// Cancelled in a transaction, in the middle of a step.
		tx, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO nums (n, label) VALUES ($1, $2)`, 100+round, fmt.Sprint("r", round)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
		err = tx.QueryRowContext(ctx, slow, 0).Scan(&n)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: slow query in a transaction = %v", round, err)
		}
		// database/sql may have thrown the connection away; either the
		// transaction goes on or it is gone, never a wrong answer.
		if got, err := tx.Query(numsFrom, 100); err == nil {
			var ns []int
			for got.Next() {
				var n int
				if err := got.Scan(&n); err != nil {
					t.Fatal(err)
				}
				ns = append(ns, n)
			}
			got.Close()
			if !slices.Equal(ns, []int{100 + round}) {
				t.Fatalf("round %d: in the transaction after the cancel = %v", round, ns)
			}
		}
		tx.Rollback()
		if got := numbers(t, db, 1); !slices.Equal(got, span(1, 5)) {
			t.Fatalf("round %d: after the rolled back transaction = %v", round, got)
		}
	}
}

func TestKeptStatementsSchemaChange(t *testing.T) {
	db := keptDB(t, 2)
	const all = `SELECT * FROM nums WHERE n = $1`
	columns := func() []string {
		t.Helper()
		rows, err := db.Query(all, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		return cols
	}
	if got := columns(); !slices.Equal(got, []string{"n", "label"}) {
		t.Fatalf("columns = %v", got)
	}
	if _, err := db.Exec(`ALTER TABLE nums ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'`); err != nil {
		t.Fatal(err)
	}
	if got := columns(); !slices.Equal(got, []string{"n", "label", "extra"}) {
		t.Fatalf("columns after ALTER TABLE = %v", got)
	}
	// An index the kept statement's plan used is dropped, the table too.
	if _, err := db.Exec(`CREATE INDEX nums_label ON nums (label)`); err != nil {
		t.Fatal(err)
	}
	const byLabel = `SELECT n FROM nums WHERE label = $1`
	var n int
	if err := db.QueryRow(byLabel, "n2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("by label: %d, %v", n, err)
	}
	if _, err := db.Exec(`DROP INDEX nums_label`); err != nil {
		t.Fatalf("dropping an index a kept statement used: %v", err)
	}
	if err := db.QueryRow(byLabel, "n2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("by label without the index: %d, %v", n, err)
	}
	if _, err := db.Exec(`DROP TABLE nums`); err != nil {
		t.Fatalf("dropping a table kept statements read: %v", err)
	}
	if err := db.QueryRow(byLabel, "n2").Scan(&n); err == nil {
		t.Fatal("query of a dropped table")
	}
}

func TestKeptStatementsBound(t *testing.T) {
	db := keptDB(t, 5)
	// Rows of a kept statement stay open while more than maxStatements
	// others are prepared: the connection forgets them all, the open
	// one is closed with its rows.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(numsFrom, 1)
	if err != nil {
		t.Fatal(err)
	}
	var read []int
	for i := range 2*maxStatements + 10 {
		var v int
		if err := tx.QueryRow(fmt.Sprintf(`SELECT %d + $1`, i), 1).Scan(&v); err != nil || v != i+1 {
			t.Fatalf("statement %d: %d, %v", i, v, err)
		}
		if i%100 == 0 && rows.Next() {
			var n int
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			read = append(read, n)
			// The same text as the open rows, prepared anew or kept.
			if got := numbers(t, tx, n); !slices.Equal(got, span(n, 5)) {
				t.Fatalf("from %d = %v", n, got)
			}
		}
	}
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		read = append(read, n)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(read, span(1, 5)) {
		t.Fatalf("rows read across the forgetting = %v", read)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := numbers(t, db, 2); !slices.Equal(got, span(2, 5)) {
		t.Fatalf("after = %v", got)
	}
}

func TestKeptStatementsConnectionReplaced(t *testing.T) {
	db := keptDB(t, 5)
	for round := range 3 {
		if got := numbers(t, db, 1); !slices.Equal(got, span(1, 5)) {
			t.Fatalf("round %d: %v", round, got)
		}
		// Every connection closed and a new one opened: the old one's
		// kept statements are closed with it.
		db.SetMaxIdleConns(0)
		if got := numbers(t, db, 4); !slices.Equal(got, span(4, 5)) {
			t.Fatalf("round %d: %v", round, got)
		}
		db.SetMaxIdleConns(1)
	}
	if n := db.Stats().OpenConnections; n > 1 {
		t.Fatalf("%d connections open", n)
	}
}

// Concurrent callers on the one connection: database/sql hands it to one
// at a time; the race detector checks the kept statements' bookkeeping.
func TestKeptStatementsConcurrent(t *testing.T) {
	db := keptDB(t, 5)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			errs <- func() error {
				for i := range 50 {
					first := 1 + (g+i)%5
					rows, err := db.Query(numsFrom, first)
					if err != nil {
						return err
					}
					var got []int
					for rows.Next() {
						var n int
						if err := rows.Scan(&n); err != nil {
							rows.Close()
							return err
						}
						got = append(got, n)
					}
					rows.Close()
					if !slices.Equal(got, span(first, 5)) {
						return fmt.Errorf("from %d = %v", first, got)
					}
					if i%10 == 0 {
						ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
						var n int64
						db.QueryRowContext(ctx, slow, 0).Scan(&n)
						cancel()
					}
				}
				return nil
			}()
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A statement prepared through database/sql (DB.Prepare, Tx.Stmt) holds
// the connection's driver statement until it is closed, and uses it
// without asking the connection again: the connection must not hand it
// to another query meanwhile, nor close it when it forgets what it kept.
func TestKeptStatementsPrepared(t *testing.T) {
	db := keptDB(t, 5)
	st, err := db.Prepare(numsFrom)
	if err != nil {
		t.Fatal(err)
	}
	// The same text run once while the prepared statement's rows are
	// open, in a transaction that uses the prepared statement too.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Stmt(st).Query(1)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	if got := numbers(t, tx, 3); !slices.Equal(got, span(3, 5)) {
		t.Fatalf("the same text while the prepared statement's rows are open = %v", got)
	}
	var n int
	if err := rows.Scan(&n); err != nil || n != 1 {
		t.Fatalf("prepared statement's first row: %d, %v", n, err)
	}
	rows.Close()
	rows, err = tx.Query(numsFrom, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	got, err := tx.Stmt(st).Query(4)
	if err != nil {
		t.Fatalf("prepared statement while the same text's rows are open: %v", err)
	}
	var ns []int
	for got.Next() {
		if err := got.Scan(&n); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	got.Close()
	if !slices.Equal(ns, span(4, 5)) {
		t.Fatalf("prepared statement while the same text's rows are open = %v", ns)
	}
	rows.Close()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// More texts than the connection keeps, then the prepared statement.
	for i := range maxStatements + 10 {
		var v int
		if err := db.QueryRow(fmt.Sprintf(`SELECT %d`, i)).Scan(&v); err != nil || v != i {
			t.Fatalf("statement %d: %d, %v", i, v, err)
		}
	}
	rows, err = st.Query(2)
	if err != nil {
		t.Fatalf("prepared statement after the connection forgot what it kept: %v", err)
	}
	ns = nil
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		ns = append(ns, n)
	}
	rows.Close()
	if !slices.Equal(ns, span(2, 5)) {
		t.Fatalf("prepared statement after the connection forgot what it kept = %v", ns)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got := numbers(t, db, 5); !slices.Equal(got, []int{5}) {
		t.Fatalf("after the prepared statement closed = %v", got)
	}
}
