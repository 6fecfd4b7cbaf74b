package web

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafeNext(t *testing.T) {
	allowed := []string{
		"/",
		"/dashboard",
		"/docs/a/b.html?x=1&y=%2F#top",
		"/search?q=//not-a-host",
		"/a%20b",
		"/%E2%9C%93",
		"/auth/page/mfa-setup?next=%2Fadmin",
	}
	for _, s := range allowed {
		if got := safeNext(s); got != s {
			t.Errorf("safeNext(%q) = %q, want it kept", s, got)
		}
	}
	refused := []string{
		"",
		"//evil.example",
		"//evil.example/path",
		"/\\evil.example",
		"\\\\evil.example",
		"\\/evil.example",
		"https://evil.example",
		"http://evil.example/",
		"HTTPS://evil.example",
		"evil.example",
		"javascript:alert(1)",
		"JavaScript:alert(1)",
		"data:text/html,hi",
		"%2F%2Fevil.example",
		"/%2Fevil.example",
		"%2f%2fevil.example",
		"/%5Cevil.example",
		"/%5cevil.example",
		"%252F%252Fevil.example",
		"/%252Fevil.example",
		"/%255Cevil.example",
		"\t//evil.example",
		"/\t/evil.example",
		"/%09/evil.example",
		" //evil.example",
		"/\n/evil.example",
		"/%0a/evil.example",
		"/%0d%0aSet-Cookie:x=1",
		"/\x00",
		"/%00",
		"/\x7f",
		"/\u0085/evil.example",
		"/a\\b",
		"/%",
		"/%zz",
		"//",
		"///evil.example",
		"/" + strings.Repeat("a", maxNextLength),
	}
	for _, s := range refused {
		if got := safeNext(s); got != "/" {
			t.Errorf("safeNext(%q) = %q, want it refused", s, got)
		}
	}
}

func TestWantsHTML(t *testing.T) {
	cases := []struct {
		accept string
		want   bool
	}{
		// Browsers navigating.
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", true},
		{"text/html", true},
		{"text/*", true},
		{"text/html;q=0.9, application/json;q=0.5", true},
		// API clients, fetch() and curl.
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"application/json, text/plain, */*", false},
		{"application/json, text/html", false},
		{"text/html;q=0.5, application/json", false},
		{"text/html;q=0, */*", false},
		{"text/html;q=bogus", false},
		{"image/png", false},
	}
	for _, tc := range cases {
		if got := wantsHTML(tc.accept); got != tc.want {
			t.Errorf("wantsHTML(%q) = %v, want %v", tc.accept, got, tc.want)
		}
	}
}

func TestEmbeddedPagesParse(t *testing.T) {
	ps, err := loadPages("")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range pageNames {
		if ps.pages[name] == nil {
			t.Errorf("page %s missing", name)
		}
	}
	if len(ps.css) == 0 {
		t.Error("no stylesheet")
	}
}

func TestPageTemplatesFromDirectory(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"login.html": `{{define "content"}}<p>Welcome to {{.SiteName}}, please sign in.</p>{{end}}`,
		"style.css":  `:root { --accent: #0a7d32; }`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := loadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ps.pages["login"].Execute(&buf, pageData{SiteName: "Acme", Title: "Sign in", Prefix: "/auth"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Welcome to Acme, please sign in.") || !strings.Contains(buf.String(), `href="/auth/page/style.css"`) {
		t.Fatalf("overridden login page:\n%s", buf.String())
	}
	buf.Reset()
	if err := ps.pages["logout"].Execute(&buf, pageData{Title: "Sign out"}); err != nil || !strings.Contains(buf.String(), "Sign out") {
		t.Fatalf("the embedded logout page: %v\n%s", err, buf.String())
	}
	if string(ps.css) != files["style.css"] {
		t.Fatalf("stylesheet %q", ps.css)
	}
	if err := os.WriteFile(filepath.Join(dir, "mfa.html"), []byte(`{{define "content"}}{{.Nope}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPages(dir); err == nil || !strings.Contains(err.Error(), "mfa.html") {
		t.Fatalf("a broken template: %v", err)
	}
}

// loadPages parses the embedded templates, each replaced by the file of
// the same name in dir when dir is set and has one (`login.html`,
// `layout.html`, `style.css`, ...).
func loadPages(dir string) (*pageSet, error) {
	return loadPageSet(dir, pageNames)
}
