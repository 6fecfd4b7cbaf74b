package caddyjwtallauth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const modulePath = "github.com/caddy-jwt-allauth/caddy-jwt-allauth"

// Packages that speak to Caddy: the adapter itself, the store and limiter
// modules (and what the SQL ones share), the store conformance suite, and
// test helpers. Every other package under caddyauth/ is the core, a leaf,
// the web layer, or the SQL store implementation, which is held to the
// core's rule: it imports the core's types, never Caddy.
var caddySide = map[string]bool{
	"caddyauth":            true,
	"caddyauth/sqlmodule":  true,
	"caddyauth/sqlite":     true,
	"caddyauth/postgres":   true,
	"caddyauth/redislimit": true,
	"caddyauth/storetest":  true,
}

// leaves are the small pure packages the core builds on.
var leaves = map[string]bool{
	"caddyauth/tokens": true, "caddyauth/passwords": true, "caddyauth/otpcode": true,
	"caddyauth/secretbox": true, "caddyauth/jsonform": true, "caddyauth/mail": true,
	"caddyauth/passkey": true, "caddyauth/useragent": true,
}

// httpThroughLibrary are packages that depend on net/http only through
// the library they wrap: go-webauthn, under the passkey leaf (and the
// relyingparty bridge between it and the core), reads requests and
// fetches metadata with it. They never import it themselves.
var httpThroughLibrary = map[string]bool{"caddyauth/passkey": true, "caddyauth/relyingparty": true}

// outbound packages make HTTP calls to outside services (the identity
// providers of social login): net/http as a client, never the core, the
// web layer or Caddy.
var outbound = map[string]bool{"caddyauth/social": true}

// htmlLeaves may render HTML without speaking HTTP: the mail leaf's
// templates have HTML bodies.
var htmlLeaves = map[string]bool{"caddyauth/mail": true}

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
		client := outbound[rel]
		if httpThroughLibrary[rel] {
			for _, imp := range imports(t, pkg) {
				if imp == "net/http" {
					t.Errorf("%s imports net/http: it may reach HTTP only through the library it wraps", rel)
				}
			}
		}
		for _, dep := range deps(t, pkg) {
			switch {
			case dep == adapter || strings.HasPrefix(dep, "github.com/caddyserver/"):
				t.Errorf("%s depends on %s: the core, the leaves and the web layer never import Caddy", rel, dep)
			case leaves[rel] && dep == modulePath+"/caddyauth/account":
				t.Errorf("%s depends on the core: the arrows point from the core to the leaves", rel)
			case dep == modulePath+"/caddyauth/web" && !web:
				t.Errorf("%s depends on the web layer: the arrows point from web to the core", rel)
			case client && (dep == modulePath+"/caddyauth/account" || dep == "html/template"):
				t.Errorf("%s depends on %s: a client of outside services judges what they answer, no more", rel, dep)
			case !web && !client && !httpThroughLibrary[rel] && dep == "net/http":
				t.Errorf("%s depends on %s: only the web layer speaks HTTP", rel, dep)
			case !web && dep == "html/template" && !htmlLeaves[rel]:
				t.Errorf("%s depends on %s: only the web layer and the mail leaf render HTML", rel, dep)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no core or leaf package was checked")
	}
}

// imports lists the packages pkg's own files import (tests aside).
func imports(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
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

// maxMethods is the most methods one type outside the store
// implementations may declare: no type carries the whole product.
const maxMethods = 25

// TestTypesStaySmall counts the methods each type declares, in every
// package but the SQL store implementations, whose types implement the
// whole Store interface by design.
func TestTypesStaySmall(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.Dir}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dir := range strings.Fields(string(out)) {
		if base := filepath.Base(dir); base == "sqlstore" || base == "sqlite" || base == "postgres" {
			continue
		}
		fset := token.NewFileSet()
		pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			methods := map[string]int{}
			for _, f := range pkg.Files {
				for _, d := range f.Decls {
					fn, ok := d.(*ast.FuncDecl)
					if !ok || fn.Recv == nil {
						continue
					}
					typ := fn.Recv.List[0].Type
					if star, ok := typ.(*ast.StarExpr); ok {
						typ = star.X
					}
					if id, ok := typ.(*ast.Ident); ok {
						methods[id.Name]++
					}
				}
			}
			for typ, n := range methods {
				if n > maxMethods {
					t.Errorf("%s.%s declares %d methods (at most %d): split it by feature", pkg.Name, typ, n, maxMethods)
				}
			}
		}
	}
}
