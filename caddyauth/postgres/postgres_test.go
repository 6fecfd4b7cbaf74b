package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlstore"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/storetest"
)

// dsnEnv names the environment variable holding the DSN of a PostgreSQL
// database the tests may create schemas in.
const dsnEnv = "JWT_ALLAUTH_TEST_POSTGRES_DSN"

// testDSN returns the DSN of a new, empty schema that is dropped when the
// test ends. It skips the test when dsnEnv is unset and fails it when the
// server cannot be reached.
func testDSN(t *testing.T) string {
	t.Helper()
	base := requirePostgres(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("opening %s: %v", dsnEnv, err)
	}
	t.Cleanup(func() { admin.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("PostgreSQL at %s is unreachable: %v", dsnEnv, err)
	}

	b := make([]byte, 8)
	rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("creating schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("dropping schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, base, schema)
}

// requirePostgres returns the DSN in dsnEnv, or skips the test when it is
// unset.
func requirePostgres(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		t.Skipf("%s is not set; set it to a PostgreSQL DSN (for example postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests", dsnEnv)
	}
	return dsn
}

func withSearchPath(t *testing.T, dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parsing %s: %v", dsnEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " search_path=" + schema
}

func caddyCtx(t *testing.T) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func TestConformance(t *testing.T) {
	requirePostgres(t)
	storetest.Run(t, func(t *testing.T) account.Store {
		s := &Store{DSN: testDSN(t)}
		storetest.Provision(t, s)
		return s
	})
}

func TestMigrateConcurrently(t *testing.T) {
	dsn := testDSN(t)
	const nodes = 8
	dbs := make([]*sql.DB, nodes)
	for i := range dbs {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make([]error, nodes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = sqlstore.Migrate(ctx, dbs[i], sqlstore.Postgres)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate on node %d: %v", i, err)
		}
	}
	var n int
	if err := dbs[0].QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations WHERE version = 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_migrations rows for version 1 = %d (%v), want 1", n, err)
	}
	// Migrating an up-to-date schema is a no-op.
	if err := sqlstore.Migrate(ctx, dbs[0], sqlstore.Postgres); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

func TestPoolSharedAcrossInstances(t *testing.T) {
	dsn := testDSN(t)
	t.Setenv("JWT_ALLAUTH_TEST_DSN_PLACEHOLDER", dsn)
	a := &Store{DSN: dsn}
	storetest.Provision(t, a)
	// The same DSN through a placeholder, as after a config reload.
	b := &Store{DSN: "{env.JWT_ALLAUTH_TEST_DSN_PLACEHOLDER}", QueryTimeout: caddy.Duration(time.Second)}
	storetest.Provision(t, b)

	if a.DB() != b.DB() {
		t.Fatal("two instances with the same DSN opened two pools")
	}
	if a.poolKey != b.poolKey || strings.Contains(a.poolKey, dsn) {
		t.Fatalf("pool keys %q, %q", a.poolKey, b.poolKey)
	}
	db := a.DB()
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil { // releases nothing twice
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("pool closed while still in use: %v", err)
	}
	if _, err := b.ListUsers(ctx); err != nil {
		t.Fatalf("store unusable after the other instance's Cleanup: %v", err)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("pool still open after the last Cleanup")
	}
}

// TestUnreachable checks that Provision fails within the query timeout,
// with an error that does not reveal the password, both when nothing
// listens and when the server accepts connections but never answers.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})

	const password = "s3cr3t-Passw0rd"
	for name, addr := range map[string]string{
		"refused": "127.0.0.1:1",
		"silent":  ln.Addr().String(),
	} {
		t.Run(name, func(t *testing.T) {
			s := &Store{
				DSN:          "postgres://app:" + password + "@" + addr + "/db?sslmode=disable&connect_timeout=30",
				QueryTimeout: caddy.Duration(500 * time.Millisecond),
			}
			start := time.Now()
			err := s.Provision(caddyCtx(t))
			elapsed := time.Since(start)
			if err == nil {
				s.Cleanup()
				t.Fatal("Provision succeeded")
			}
			if elapsed > 3*time.Second {
				t.Fatalf("Provision took %v with a 500ms query timeout", elapsed)
			}
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), s.DSN) {
				t.Fatalf("error reveals the DSN: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "connecting to postgres: ") {
				t.Fatalf("error = %v", err)
			}
			if s.poolKey != "" {
				t.Fatal("failed Provision kept a pool reference")
			}
			t.Logf("Provision error after %v: %v", elapsed, err)
		})
	}
}

// TestQueryTimeout checks that a call blocked in the database (here on a
// row lock held by another transaction) gives up after the query timeout.
func TestQueryTimeout(t *testing.T) {
	s := &Store{DSN: testDSN(t), QueryTimeout: caddy.Duration(300 * time.Millisecond)}
	storetest.Provision(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := s.CreateUser(ctx, account.User{Email: "lock@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT id FROM users WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.DeleteUser(ctx, id)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Fatalf("DeleteUser blocked %v with a 300ms query timeout", elapsed)
	}
	if err == nil || errors.Is(err, account.ErrNotFound) {
		t.Fatalf("DeleteUser on a locked row: err = %v, want a timeout", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "cancel") {
		t.Logf("timeout error: %v", err)
	}
}

func TestSanitize(t *testing.T) {
	dsn := "postgres://u:hunter2@db.example:5432/x"
	got := sanitize(errors.New("failed: postgres://u:hunter2@db.example:5432/x and hunter2"), dsn, "hunter2")
	if strings.Contains(got, "hunter2") {
		t.Fatalf("sanitize = %q", got)
	}
	if _, err := pgx.ParseConfig("postgres://u:hunter2@db.example:notaport/x"); err == nil {
		t.Fatal("bad DSN parsed")
	} else if s := sanitize(err, "postgres://u:hunter2@db.example:notaport/x", ""); strings.Contains(s, "hunter2") {
		t.Fatalf("parse error reveals password: %q", s)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input   string
		dsn     string
		timeout time.Duration
		wantErr bool
	}{
		{input: `postgres {env.DATABASE_URL}`, dsn: "{env.DATABASE_URL}"},
		{input: `postgres "host=db user=app"`, dsn: "host=db user=app"},
		{input: "postgres postgres://db/app {\n\tquery_timeout 2s\n}", dsn: "postgres://db/app", timeout: 2 * time.Second},
		{input: `postgres`, wantErr: true},
		{input: `postgres a b`, wantErr: true},
		{input: "postgres x {\n\tbogus\n}", wantErr: true},
		{input: "postgres x {\n\tquery_timeout soon\n}", wantErr: true},
	} {
		var s Store
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err = %v, wantErr %v", tc.input, err, tc.wantErr)
			continue
		}
		if err == nil && (s.DSN != tc.dsn || time.Duration(s.QueryTimeout) != tc.timeout) {
			t.Errorf("%q: got dsn %q timeout %v", tc.input, s.DSN, time.Duration(s.QueryTimeout))
		}
	}

	// A dispenser already past the module name works too.
	d := caddyfile.NewTestDispenser("store postgres postgres://db/app")
	d.Next()
	d.Next()
	var s Store
	if err := s.UnmarshalCaddyfile(d); err != nil || s.DSN != "postgres://db/app" {
		t.Fatalf("after module name: dsn %q, err %v", s.DSN, err)
	}
}

// TestCommitUnflushedIsLocal: CommitUnflushed changes how its own
// transaction commits and nothing after it; the next transaction on the
// same connection waits for its flush again.
func TestCommitUnflushedIsLocal(t *testing.T) {
	db, err := sql.Open("pgx", testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1) // every statement below runs on one connection
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sqlstore.Migrate(ctx, db, sqlstore.Postgres); err != nil {
		t.Fatal(err)
	}
	s := sqlstore.New(db, sqlstore.Postgres)
	if err := s.InTx(ctx, func(tx account.Store) error { return tx.CommitUnflushed(ctx) }); err != nil {
		t.Fatal(err)
	}
	var setting string
	if err := db.QueryRowContext(ctx, "SHOW synchronous_commit").Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "on" {
		t.Fatalf("synchronous_commit after the transaction = %q, want on", setting)
	}
}
