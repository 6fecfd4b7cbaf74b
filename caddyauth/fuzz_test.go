package caddyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzReadForm feeds request bodies and content types to the JSON decoder
// every endpoint uses: it must answer a 4xx apiError or a form, never
// panic, and a string it hands out never carries a NUL.
func FuzzReadForm(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"email":"a@b.c","password":"x"}`},
		{"application/json; charset=utf-8", `{"email":"a@b.c","email":"d@e.f"}`},
		{"application/json", `{"email":`},
		{"application/json", `{"a":1}{"b":2}`},
		{"application/json", `null`},
		{"application/json", `[1,2,3]`},
		{"application/json", `{"code":123456,"challenge_id":["x"]}`},
		{"application/json", `{"password":"a\u0000b"}`},
		{"application/json", "{\"email\":\"\xff\xfe\"}"},
		{"text/plain", `{"email":"a@b.c"}`},
		{"", ``},
		{"application/json", strings.Repeat("[", 10000)},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/auth/login/", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		fm, err := readForm(w, r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status < 400 || ae.status >= 500 {
				t.Fatalf("readForm error %v is not a 4xx answer", err)
			}
			if _, merr := json.Marshal(ae.body); merr != nil {
				t.Fatalf("error body does not marshal: %v", merr)
			}
			return
		}
		for name := range fm.fields {
			if s := fm.str(name, true, true); strings.ContainsRune(s, 0) {
				t.Fatalf("field %q handed out a NUL", name)
			}
			fm.integer(name, false)
		}
		for _, name := range []string{"email", "password", "code", "challenge_id", "refresh"} {
			fm.str(name, true, false)
		}
		if ferr := fm.err(); ferr != nil {
			var ae *apiError
			if !errors.As(ferr, &ae) || ae.status != http.StatusBadRequest {
				t.Fatalf("field error %v is not a 400", ferr)
			}
		}
	})
}

// FuzzCaddyfile feeds the global option and both directives to their
// Caddyfile parsers: each either fails with an error or gives a config
// that marshals and validates (or fails validation) without panicking.
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"jwt_allauth {\n\tstore sqlite /tmp/x.db\n\tsigning_key {env.JWT}\n\taccess_ttl 5m\n}",
		"jwt_allauth {\n\tthrottle login_ip 10 1m\n\tthrottle login_email off\n}",
		"jwt_allauth {\n\trate_limit memory\n\tmfa_totp_mode optional\n\ttotp_skew 1\n}",
		"jwt_allauth {\n\trate_limit redis redis://127.0.0.1:6379/0 {\n\t\ttimeout 100ms\n\t}\n}",
		"jwt_allauth {\n\tmfa_max_attempts -3\n\ttotp_issuer \"\"\n}",
		"jwt_allauth {\n\tthrottle login_ip 1 1m\n\tthrottle login_ip 2 1m\n}",
		"jwt_allauth extra {\n}",
		"jwt_allauth {\n\tprefix /auth\n}",
		"jwt_allauth_guard {\n\troles 0 900 1000\n\theader X-User-Id user_id\n\tsession_check\n}",
		"jwt_allauth {\n\tstore",
		"jwt_allauth {\n\t{\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			if _, err := json.Marshal(&a); err != nil {
				t.Fatalf("app config does not marshal: %v", err)
			}
			_ = a.Validate()
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			_ = h.Validate()
		}
		var g Guard
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil {
			_ = g.Validate()
		}
	})
}
