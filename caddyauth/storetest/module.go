package storetest

import (
	"context"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// Module is a store module as Caddy runs it.
type Module interface {
	caddy.Provisioner
	caddy.Validator
	caddy.CleanerUpper
}

// Provision provisions and validates m in a new Caddy context, failing the
// test on an error, and cleans m up when the test ends, failing it if that
// errs.
func Provision(t testing.TB, m Module) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := m.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
}
