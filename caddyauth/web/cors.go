package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Cross-origin requests. A CORS preflight (`OPTIONS` with
// `Access-Control-Request-Method`) carries no credentials by definition, so
// the guard answers it itself rather than hand it to an app (unless
// `preflight pass`), and the endpoints answer it too. For the origins a
// `cors` line names, the answers carry the Access-Control-* headers a
// single-page app on that origin needs to call with credentials
// (`fetch(..., {credentials: "include"})`); for any other origin they carry
// none, and the browser keeps the answer from the page.

// corsAllowHeaders are the request headers a listed origin may send: the
// token, a JSON body, the capability forms' CSRF header, and the marker
// common JavaScript libraries add.
const corsAllowHeaders = "Authorization, Content-Type, X-CSRFToken, X-Requested-With"

// corsExposeHeaders are the response headers a listed origin's script may
// read besides the safelisted ones: how long to wait after a 429 or 503,
// and why a token was refused.
const corsExposeHeaders = "Retry-After, WWW-Authenticate"

// corsMaxAge is how long, in seconds, a browser may reuse a preflight's
// answer.
const corsMaxAge = "3600"

// guardMethods are the methods the guard allows a listed origin to use.
var guardMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// CheckOrigins refuses a `cors` list that is not a list of exact origins:
// `*` (a wildcard cannot go with credentials, and a listed origin gets the
// user's credentials), anything with a path, query, user or wildcard, and a
// default port a browser would never send.
func CheckOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" || o == "null" {
			return fmt.Errorf("cors: %q would let any page read answers made with the user's credentials; list the exact origins of your apps, e.g. cors https://app.example.com", o)
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.ForceQuery || strings.Contains(o, "#") || strings.Contains(u.Host, "*") {
			return fmt.Errorf("cors: %q is not an origin: write scheme://host[:port] with nothing after it, e.g. https://app.example.com", o)
		}
		if (u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80") {
			return fmt.Errorf("cors: %q names its scheme's default port, which a browser leaves out of Origin; write %s://%s", o, u.Scheme, u.Hostname())
		}
	}
	return nil
}

// CORSHeaders adds to an answer for r the headers of a credentialed CORS
// response when r's Origin is one of origins, and reports whether it did.
// Every answer varies by Origin once a list is configured.
func CORSHeaders(h http.Header, r *http.Request, origins []string) bool {
	if len(origins) == 0 {
		return false
	}
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" || !originListed(origins, origin) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	if !IsPreflight(r) {
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	}
	return true
}

// originListed compares an Origin header with the list; scheme and host
// are case-insensitive.
func originListed(origins []string, origin string) bool {
	for _, o := range origins {
		if strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// AllowPreflight adds to a preflight's answer, for an origin CORSHeaders
// granted, the methods, headers and lifetime allowed.
func AllowPreflight(h http.Header, methods []string) {
	h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
}

// withoutBody strips a request's body, for a preflight handed on with
// `preflight pass`: a preflight has none, and whatever a client sent as
// one must not reach an app that ignores the method.
func withoutBody(r *http.Request) {
	r.Body = http.NoBody
	r.ContentLength = 0
	r.TransferEncoding = nil
	r.Header.Del("Content-Length")
	r.Header.Del("Transfer-Encoding")
	r.Header.Del("Content-Type")
}
