package web

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The attempt cookie goes back with a provider's form_post (a cross-site
// POST) only as SameSite=None, which browsers take only when Secure.
func TestAttemptCookieAttributes(t *testing.T) {
	for _, tc := range []struct {
		secure bool
		want   http.SameSite
	}{{true, http.SameSiteNoneMode}, {false, http.SameSiteLaxMode}} {
		h := &Handler{cfg: Config{Prefix: "/auth", CookieSecure: tc.secure}}
		rec := httptest.NewRecorder()
		h.setAttemptCookie(rec, "state.Lw")
		cs := rec.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		c := cs[0]
		if c.Name != socialCookie || c.Value != "state.Lw" || c.Path != "/auth/social/" || !c.HttpOnly || c.Secure != tc.secure || c.SameSite != tc.want || c.MaxAge != 600 {
			t.Errorf("secure=%v: cookie %+v", tc.secure, c)
		}
		rec = httptest.NewRecorder()
		h.setAttemptCookie(rec, "")
		if c := rec.Result().Cookies()[0]; c.MaxAge >= 0 || c.Path != "/auth/social/" {
			t.Errorf("secure=%v: clearing cookie %+v", tc.secure, c)
		}
	}
}

func TestAttemptOf(t *testing.T) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct{ cookie, state, next string }{
		{"abc." + enc("/docs?x=1"), "abc", "/docs?x=1"},
		{"abc." + enc("//evil.example"), "abc", "/"},
		{"abc", "", "/"},
		{"." + enc("/docs"), "", "/"},
		{"abc.not base64!", "", "/"},
		{"", "", "/"},
	} {
		if state, next := attemptOf(tc.cookie); state != tc.state || next != tc.next {
			t.Errorf("attemptOf(%q) = %q, %q; want %q, %q", tc.cookie, state, next, tc.state, tc.next)
		}
	}
}
