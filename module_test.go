package caddyjwtallauth_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	"golang.org/x/mod/modfile"

	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth"
)

// TestCaddyfileAdapt adapts every testdata/caddyfile_adapt/*.caddyfiletest
// (a Caddyfile, a line of dashes, then the expected JSON) and compares.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests found: %v", err)
	}
	split := regexp.MustCompile(`(?m)^-{10,}\s*$`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := split.Split(string(data), 2)
			if len(parts) != 2 {
				t.Fatalf("%s: no dashed separator", f)
			}
			if !caddytest.CompareAdapt(t, f, parts[0], "caddyfile", strings.TrimSpace(parts[1])) {
				t.Fail()
			}
		})
	}
}

// TestCaddyfileExampleAdapts keeps Caddyfile.example from rotting: it must
// adapt, and name the modules README promises.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out := adapt(t, string(src))
	for _, want := range []string{`"jwt_allauth":{`, `"handler":"jwt_allauth"`, `"handler":"jwt_allauth_guard"`, `"handler":"reverse_proxy"`, `"prefix":"/auth"`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted example lacks %s:\n%s", want, out)
		}
	}
}

// TestCaddyfileBrowserExampleAdapts does the same for the browser setup:
// the endpoints, an API guard and a site guard that redirects.
func TestCaddyfileBrowserExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.browser.example")
	if err != nil {
		t.Fatal(err)
	}
	out := adapt(t, string(src))
	for _, want := range []string{`"handler":"jwt_allauth"`, `"prefix":"/auth"`, `"redirect":"/auth/page/login"`, `"path":["/api/*"]`, `"cookie_insecure":true`} {
		if !strings.Contains(out, want) {
			t.Errorf("adapted browser example lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, `"handler":"jwt_allauth_guard"`); n != 2 {
		t.Errorf("%d guards in the adapted browser example, want 2", n)
	}
}

// TestExamplesProvision runs what `caddy validate` does on each example
// (every module provisioned, nothing started), with an empty data
// directory, so an example that would not start fails here.
func TestExamplesProvision(t *testing.T) {
	for _, name := range []string{"Caddyfile.example", "Caddyfile.browser.example"} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			t.Setenv("XDG_DATA_HOME", data)
			// Caddy's default storage, where the generated keys go, took
			// its path from the data directory when the process started.
			prev := caddy.DefaultStorage.Path
			caddy.DefaultStorage.Path = filepath.Join(data, "caddy")
			t.Cleanup(func() { caddy.DefaultStorage.Path = prev })
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var cfg caddy.Config
			if err := json.Unmarshal([]byte(adapt(t, string(src))), &cfg); err != nil {
				t.Fatal(err)
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("%s does not provision: %v", name, err)
			}
		})
	}
}

// TestXcaddyRecipeMatchesGoMod checks xcaddy.json builds the Caddy version
// go.mod requires, with this module.
func TestXcaddyRecipeMatchesGoMod(t *testing.T) {
	raw, err := os.ReadFile("xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	var recipe struct {
		CaddyVersion string `json:"caddy_version"`
		Plugins      []struct {
			ModulePath string `json:"module_path"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &recipe); err != nil {
		t.Fatal(err)
	}
	gm, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gm, nil)
	if err != nil {
		t.Fatal(err)
	}
	var caddyVersion string
	for _, r := range mf.Require {
		if r.Mod.Path == "github.com/caddyserver/caddy/v2" {
			caddyVersion = r.Mod.Version
		}
	}
	if recipe.CaddyVersion != caddyVersion {
		t.Errorf("xcaddy.json builds Caddy %s, go.mod requires %s", recipe.CaddyVersion, caddyVersion)
	}
	if len(recipe.Plugins) != 1 || recipe.Plugins[0].ModulePath != mf.Module.Mod.Path {
		t.Errorf("xcaddy.json plugins %+v, want %s", recipe.Plugins, mf.Module.Mod.Path)
	}
}

// adapt runs the Caddyfile adapter and returns the JSON.
func adapt(t *testing.T, src string) string {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	return string(out)
}
