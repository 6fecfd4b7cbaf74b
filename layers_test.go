package caddyjwtallauth

import (
	"os/exec"
	"strings"
	"testing"
)

const modulePath = "github.com/caddy-jwt-allauth/caddy-jwt-allauth"

// Packages that speak to Caddy: the adapter itself, the store and limiter
// modules, the store conformance suite, and test helpers. Every other
// package under caddyauth/ is the core or a leaf, or the web layer.
var caddySide = map[string]bool{
	"caddyauth":            true,
	"caddyauth/sqlstore":   true,
	"caddyauth/sqlite":     true,
	"caddyauth/postgres":   true,
	"caddyauth/redislimit": true,
	"caddyauth/storetest":  true,
}

// TestLayers keeps the arrows pointing one way: the Caddy adapter uses the
// web layer, which uses the core, which uses the leaves. The core and the
// leaves import neither HTTP, HTML templates nor Caddy, not even through
// a dependency; the web layer imports no Caddy; and nothing but the
// adapter's own module registration imports the adapter package.
func TestLayers(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "./caddyauth/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	adapter := modulePath + "/caddyauth"
	checked := 0
	for _, pkg := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(pkg, modulePath+"/")
		if caddySide[rel] || strings.HasPrefix(rel, "caddyauth/internal/") {
			// Store and limiter modules may import Caddy, never the adapter.
			if rel != "caddyauth" {
				for _, dep := range deps(t, pkg) {
					if dep == adapter {
						t.Errorf("%s imports the Caddy adapter %s", rel, adapter)
					}
				}
			}
			continue
		}
		web := rel == "caddyauth/web" || strings.HasPrefix(rel, "caddyauth/web/")
		for _, dep := range deps(t, pkg) {
			switch {
			case dep == adapter || strings.HasPrefix(dep, "github.com/caddyserver/"):
				t.Errorf("%s depends on %s: the core, the leaves and the web layer never import Caddy", rel, dep)
			case !web && (dep == "net/http" || dep == "html/template"):
				t.Errorf("%s depends on %s: only the web layer speaks HTTP", rel, dep)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no core or leaf package was checked")
	}
}

// deps lists every package pkg depends on, directly or not.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}
