package caddyauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

// BenchmarkGuard measures the guard's cached path: a request whose token
// was verified before goes through the guard to a next handler that does
// nothing. Each request is prepared as Caddy's server prepares one (a
// fresh replacer, the request's context); "plain" is the same without the
// guard. Each case runs on one goroutine and, under "/parallel", on
// GOMAXPROCS.
func BenchmarkGuard(b *testing.B) {
	ctx := context.Background()
	rl := coretest.New(b, account.Config{})
	const email, password = "bench@example.com", "Quiet-Harbor-7731"
	if _, err := rl.Users.Create(ctx, email, password, account.RoleUser); err != nil {
		b.Fatal(err)
	}
	o := account.Origin{IP: "192.0.2.1", Host: "example.com", Site: "https://example.com/auth"}
	step, err := rl.Sessions.Login(ctx, o, email, password)
	if err != nil || step.Pending() {
		b.Fatalf("login: %+v, %v", step, err)
	}
	pat, err := rl.PersonalTokens.Create(ctx, o, account.TokenRequest{Access: step.Pair.Access, Name: "bench", ExpiresInDays: 30})
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		cfg   *web.GuardConfig // nil: no guard
		token string
	}{
		{"plain", nil, step.Pair.Access},
		{"token", &web.GuardConfig{}, step.Pair.Access},
		{"session_check", &web.GuardConfig{SessionCheck: true}, step.Pair.Access},
		{"roles_headers", &web.GuardConfig{Roles: []int{account.RoleUser}, Headers: map[string]string{"X-User-Id": "user_id", "X-Role": "role"}}, step.Pair.Access},
		{"personal_token", &web.GuardConfig{AccessTokens: true}, pat.Token},
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	for _, tc := range cases {
		serve := next.ServeHTTP
		if tc.cfg != nil {
			g := &Guard{guard: web.NewGuard(*tc.cfg, rl.Service, "access_token", zap.NewNop(), nil), logger: zap.NewNop()}
			serve = func(w http.ResponseWriter, r *http.Request) error { return g.ServeHTTP(w, r, next) }
		}
		newBase := func() *http.Request {
			r := httptest.NewRequest("GET", "/api/items", nil)
			r.Header.Set("Authorization", "Bearer "+tc.token)
			r.Header.Set("User-Agent", "bench")
			r.Header.Set("Accept", "application/json")
			return r
		}
		check := func(b *testing.B, w *httptest.ResponseRecorder, err error) {
			if err != nil || w.Code != http.StatusOK {
				b.Fatalf("%d, %v", w.Code, err)
			}
		}
		// One goroutine: the requests are prepared in batches with the
		// timer stopped, so ns/op and allocs/op are the guard's alone.
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			base, w := newBase(), httptest.NewRecorder()
			reqs := make([]*http.Request, 64) // few enough to stay in the CPU cache
			for i := range b.N {
				if i%len(reqs) == 0 {
					b.StopTimer()
					for j := range reqs {
						reqs[j] = caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)
					}
					b.StartTimer()
				}
				check(b, w, serve(w, reqs[i%len(reqs)]))
			}
		})
		// GOMAXPROCS goroutines, each preparing its requests as it goes:
		// compare with plain/parallel.
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				base, w := newBase(), httptest.NewRecorder()
				for pb.Next() {
					check(b, w, serve(w, caddyhttp.PrepareRequest(base, caddy.NewReplacer(), w, nil)))
				}
			})
		})
	}
}
