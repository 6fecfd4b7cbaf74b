package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// What a browser needs that an API client does not: the access token in a
// cookie, a safe `next` for redirects, content negotiation between an HTML
// redirect and a JSON 401, and CSRF tokens for the HTML forms.

// cookies sets and reads the cookies of the browser flows: the session's,
// the CSRF cookie of the pages, the capabilities behind mailed links.
type cookies struct {
	cfg *Config
}

// DefaultAccessCookie names the access-token cookie when `access_cookie`
// is not set.
const DefaultAccessCookie = "access_token"

// setAccessCookie stores an access token for the guard to read: HttpOnly,
// SameSite as `cookie_samesite` says (Lax by default), Path=/, Secure and
// named with the `__Host-` prefix unless cookie_insecure, and no longer
// than the token lives.
func (c *cookies) setAccessCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     c.cfg.AccessCookie,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   c.cfg.CookieSecure,
		SameSite: c.cfg.CookieSameSite,
	})
}

// accessCookieValue is the access token the browser sent in the cookie,
// or "".
func (c *cookies) accessCookieValue(r *http.Request) string {
	if ck, err := r.Cookie(c.cfg.AccessCookie); err == nil {
		return ck.Value
	}
	return ""
}

// maxNextLength bounds a `next` target; longer ones fall back to "/".
const maxNextLength = 2048

// safeNext returns raw when it is a same-site path a redirect may go to,
// else "/". Only a path starting with exactly one `/` qualifies: no scheme,
// no host, no `//` or `/\` (browsers read both as the start of a host), no
// backslash or control character anywhere, and the same must hold after
// percent-decoding (up to three times, for doubly encoded input). A raw
// space is refused too (an encoded one is a harmless part of a path).
func safeNext(raw string) string {
	if ok := isSafePath(raw); ok {
		return raw
	}
	return "/"
}

func isSafePath(raw string) bool {
	if raw == "" || len(raw) > maxNextLength {
		return false
	}
	if strings.ContainsRune(raw, ' ') {
		return false
	}
	s := raw
	for range 4 {
		if !isPlainPath(s) {
			return false
		}
		dec, err := url.PathUnescape(s)
		if err != nil {
			return false
		}
		if dec == s {
			break
		}
		s = dec
	}
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil && u.Opaque == "" && strings.HasPrefix(u.Path, "/")
}

// isPlainPath checks one spelling of a candidate path.
func isPlainPath(s string) bool {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || c == '\\' || (c >= 0x80 && c <= 0x9f) {
			return false
		}
	}
	return true
}

// wantsHTML reports whether an Accept header prefers text/html to
// application/json: a browser navigating, not an API client. Each type's
// quality comes from its most specific matching range; ties (as with
// `*/*` or no header) go to JSON.
func wantsHTML(accept string) bool {
	return acceptQuality(accept, "text", "html") > acceptQuality(accept, "application", "json")
}

// acceptQuality is the q-value the Accept header gives type/sub.
func acceptQuality(accept, typ, sub string) float64 {
	best, bestSpecificity := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		t, s, _ := strings.Cut(mt, "/")
		specificity := 0
		switch {
		case t == typ && s == sub:
			specificity = 2
		case t == typ && s == "*":
			specificity = 1
		case t == "*" && s == "*":
			specificity = 0
		default:
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				q = f
			} else {
				q = 0
			}
		}
		if specificity > bestSpecificity {
			best, bestSpecificity = q, specificity
		}
	}
	return best
}

// csrfField is the form field carrying the CSRF token.
const csrfField = "csrf_token"

// csrfCookieName is the cookie the CSRF token is bound to, with the
// `__Host-` prefix when cookies are Secure.
func (c *cookies) csrfCookieName() string {
	return HostCookie("jwt_allauth_csrf", c.cfg.CookieSecure)
}

// HostCookie is name with the `__Host-` prefix when cookies are Secure: a
// browser takes such a cookie only from this very host, over HTTPS, with
// Path=/ and no Domain, so a sibling subdomain or a plain-HTTP answer can
// neither plant nor overwrite it.
func HostCookie(name string, secure bool) string {
	if secure {
		return "__Host-" + name
	}
	return name
}

// csrfToken returns the token the forms of this response must carry,
// setting the browser's CSRF cookie first unless it holds one this server
// issued. The cookie is a random nonce with its MAC, the token a MAC of
// the cookie, both under a key derived from the realm's keys, so they are
// the same on every node sharing the store; a cookie the server did not
// issue (planted with a value of someone else's choosing) is replaced,
// never adopted.
func (c *cookies) csrfToken(w http.ResponseWriter, r *http.Request) (string, error) {
	if v, ok := c.csrfCookie(r); ok {
		return c.csrfMAC(v), nil
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(c.cfg.Rand, b); err != nil {
		return "", err
	}
	nonce := base64.RawURLEncoding.EncodeToString(b)
	v := nonce + "." + c.csrfCookieMAC(nonce)
	http.SetCookie(w, &http.Cookie{
		Name:     c.csrfCookieName(),
		Value:    v,
		Path:     "/",
		HttpOnly: true,
		Secure:   c.cfg.CookieSecure,
		SameSite: http.SameSiteStrictMode,
	})
	r.AddCookie(&http.Cookie{Name: c.csrfCookieName(), Value: v})
	return c.csrfMAC(v), nil
}

// csrfCookie is the first CSRF cookie of the request this server issued.
// Every cookie of the name is looked at: without the `__Host-` prefix a
// parent domain may add one of its own, which must not hide ours.
func (c *cookies) csrfCookie(r *http.Request) (string, bool) {
	for _, ck := range r.CookiesNamed(c.csrfCookieName()) {
		if c.issuedCSRFCookie(ck.Value) {
			return ck.Value, true
		}
	}
	return "", false
}

// issuedCSRFCookie reports whether v is a CSRF cookie value this server
// issued: a 43-character nonce, a dot, and the nonce's MAC.
func (c *cookies) issuedCSRFCookie(v string) bool {
	nonce, mac, ok := strings.Cut(v, ".")
	return ok && len(nonce) == 43 && hmac.Equal([]byte(mac), []byte(c.csrfCookieMAC(nonce)))
}

func (c *cookies) csrfCookieMAC(nonce string) string {
	m := hmac.New(sha256.New, c.cfg.CSRFKey)
	m.Write([]byte("csrf cookie\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *cookies) csrfMAC(cookie string) string { return CSRFTokenFor(c.cfg.CSRFKey, cookie) }

// CSRFTokenFor is the form token of the CSRF cookie value cookie under key.
func CSRFTokenFor(key []byte, cookie string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("csrf\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfValid checks a parsed form post: the cookie must be one this server
// issued, the token must match it, and an Origin header, when the browser
// sends one, must be this host.
func (c *cookies) csrfValid(r *http.Request) bool {
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	v, ok := c.csrfCookie(r)
	got := r.PostForm.Get(csrfField)
	return ok && got != "" && hmac.Equal([]byte(got), []byte(c.csrfMAC(v)))
}
