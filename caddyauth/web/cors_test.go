package web

import "testing"

// TestCheckOrigins: only exact origins pass; anything a browser would
// never send as Origin, and every wildcard, is refused.
func TestCheckOrigins(t *testing.T) {
	for _, o := range []string{"https://a.example.com?", "https://a.example.com#", "https://a.example.com/x", "https://u@a.example.com", "ftp://a.example.com", "https://", "https://:8443", "*", "null", "https://*.a.com", "https://a.example.com:443", "http://a:80"} {
		if CheckOrigins([]string{o}) == nil {
			t.Errorf("%q accepted", o)
		}
	}
	for _, o := range []string{"https://a.example.com", "http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]:8443", "HTTPS://A.example.com"} {
		if err := CheckOrigins([]string{o}); err != nil {
			t.Errorf("%q: %v", o, err)
		}
	}
}
