package sqlite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) account.Store {
		s := &Store{Path: filepath.Join(t.TempDir(), "auth.db")}
		storetest.Provision(t, s)
		return s
	})
}

func TestPoolSharedAndForeignKeys(t *testing.T) {
	// Characters that mean something in a URI must not confuse the DSN.
	path := filepath.Join(t.TempDir(), "sub dir", "50%", "auth#1?.db")
	a := &Store{Path: path}
	storetest.Provision(t, a)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("database not created at %q: %v", path, err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode: %v (%v)", fi.Mode(), err)
	}
	b := &Store{Path: path, QueryTimeout: caddy.Duration(time.Second)}
	storetest.Provision(t, b)
	if a.DB() != b.DB() {
		t.Fatal("two instances with the same path opened two databases")
	}
	if a.Store.QueryTimeout == b.Store.QueryTimeout {
		t.Fatal("instances share their query timeout")
	}
	var fk bool
	if err := a.DB().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || !fk {
		t.Fatalf("foreign_keys = %v (%v)", fk, err)
	}
	var mode string
	if err := a.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		t.Fatalf("journal_mode = %q (%v)", mode, err)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// b's Cleanup must not close the database a still uses.
	if err := a.DB().Ping(); err != nil {
		t.Fatalf("database closed while still in use: %v", err)
	}
	if err := b.Cleanup(); err != nil { // a second Cleanup releases nothing
		t.Fatal(err)
	}
	if err := a.DB().Ping(); err != nil {
		t.Fatalf("a second Cleanup of b released a's reference: %v", err)
	}
	db := a.DB()
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(); err == nil {
		t.Fatal("database still open after the last Cleanup")
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		input   string
		path    string
		timeout time.Duration
		wantErr bool
	}{
		{input: `sqlite`},
		{input: `sqlite /var/lib/auth.db`, path: "/var/lib/auth.db"},
		{input: "sqlite /x.db {\n\tquery_timeout 2s\n}", path: "/x.db", timeout: 2 * time.Second},
		{input: "sqlite {\n\tquery_timeout 3s\n}", timeout: 3 * time.Second},
		{input: `sqlite a b`, wantErr: true},
		{input: "sqlite {\n\tbogus 1\n}", wantErr: true},
		{input: "sqlite {\n\tquery_timeout\n}", wantErr: true},
	} {
		var s Store
		err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err = %v, wantErr %v", tc.input, err, tc.wantErr)
			continue
		}
		if err == nil && (s.Path != tc.path || time.Duration(s.QueryTimeout) != tc.timeout) {
			t.Errorf("%q: got path %q timeout %v", tc.input, s.Path, time.Duration(s.QueryTimeout))
		}
	}
}
