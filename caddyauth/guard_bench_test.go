package caddyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

// BenchmarkGuard measures the guard's own cost per request with a valid
// token, against the same next handler called directly.
func BenchmarkGuard(b *testing.B) {
	rl := coretest.New(b, account.Config{})
	c := tokens.Claims{TokenType: tokens.TypeAccess, UserID: "7", Session: "s", Role: 0}
	c.ID = "j"
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
	tok, err := rl.Keys().Sign(c)
	if err != nil {
		b.Fatal(err)
	}
	g := &Guard{guard: web.NewGuard(web.GuardConfig{}, rl.Service, "access_token", zap.NewNop(), nil), logger: zap.NewNop()}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	newReq := func() *http.Request {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		repl := caddy.NewReplacer()
		return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
	}
	b.Run("guarded", func(b *testing.B) {
		r := newReq()
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := g.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := newReq()
			w := httptest.NewRecorder()
			for pb.Next() {
				if err := g.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
