package caddyauth_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// reloadViaAdmin posts a Caddyfile to the admin endpoint's /load, which is
// what `caddy reload` does.
func reloadViaAdmin(t *testing.T, cf string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.Post("http://"+testAdmin+"/load", "application/json", bytes.NewReader(cfg))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("reload: status %d", res.StatusCode)
	}
}

// TestReloadUnderTrafficE2E reloads Caddy several times while clients log
// in, refresh and call a guarded route: no request may fail, and on
// PostgreSQL the reloads must neither drop nor double the pool.
func TestReloadUnderTrafficE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		app := ""
		if strings.HasPrefix(store, "store postgres ") {
			// Tag our connections so pg_stat_activity can count them.
			app = "e2e_reload_" + randomHex(t, 4)
			u, err := url.Parse(strings.TrimPrefix(store, "store postgres "))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("application_name", app)
			u.RawQuery = q.Encode()
			store = "store postgres " + u.String()
		}
		cfgFor := func(i int) string {
			return caddyfile(store, "", strings.Replace(defaultBody, `respond "user=`, fmt.Sprintf(`respond "gen=%d user=`, i), 1))
		}
		s := startCaddy(t, cfgFor(0))
		mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		conns0 := pgConnections(t, app)

		var failures, requests, resets atomic.Int64
		var failMu sync.Mutex
		var firstFailure string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		fail := func(msg string) {
			failures.Add(1)
			failMu.Lock()
			if firstFailure == "" {
				firstFailure = msg
			}
			failMu.Unlock()
		}
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				refresh := ""
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var req *http.Request
					switch {
					case w == 0 && refresh == "":
						req, _ = http.NewRequest("POST", testBase+"/auth/login/", strings.NewReader(`{"email":"`+userEmail+`","password":"`+userPass+`"}`))
						req.Header.Set("Content-Type", "application/json")
					case w == 0:
						req, _ = http.NewRequest("POST", testBase+"/auth/refresh/", nil)
						req.Header.Set("Cookie", "refresh_token="+refresh)
					default:
						req, _ = http.NewRequest("GET", testBase+"/", nil)
						req.Header.Set("Authorization", "Bearer "+access)
					}
					requests.Add(1)
					res, err := client.Do(req)
					if err != nil {
						// A connection reset or closed by Caddy's listener
						// handoff: Caddy core's, it happens in front of any
						// handler. The client starts over (a refresh whose
						// answer was lost is unknowable, so log in again).
						if !isConnReset(err) {
							fail(err.Error())
						}
						resets.Add(1)
						refresh = ""
						continue
					}
					if res.StatusCode != 200 {
						fail(fmt.Sprintf("%s %s: %d", req.Method, req.URL.Path, res.StatusCode))
					}
					for _, c := range res.Cookies() {
						if c.Name == "refresh_token" {
							refresh = c.Value
						}
					}
					res.Body.Close()
				}
			}(w)
		}
		for i := 1; i <= 5; i++ {
			time.Sleep(150 * time.Millisecond)
			reloadViaAdmin(t, cfgFor(i))
		}
		time.Sleep(150 * time.Millisecond)
		close(stop)
		wg.Wait()
		if failures.Load() > 0 {
			t.Fatalf("%d of %d requests failed across reloads; first: %s", failures.Load(), requests.Load(), firstFailure)
		}
		t.Logf("%d requests, %d connection resets during the listener handoff", requests.Load(), resets.Load())
		if requests.Load() < 20 {
			t.Fatalf("only %d requests ran during the reloads", requests.Load())
		}
		r := s.get("/", bearer(access)).expect(t, 200)
		if !strings.HasPrefix(string(r.raw), "gen=5 ") {
			t.Fatalf("the last config is not live: %q", r.raw)
		}
		if app != "" {
			conns := pgConnections(t, app)
			// The pool is the same one: at most what the traffic needed
			// before the reloads, plus what the traffic opened since, never
			// one pool per generation.
			if conns0 == 0 || conns > conns0+4 {
				t.Fatalf("PostgreSQL connections: %d before reloads, %d after", conns0, conns)
			}
		}
	})
}

// isConnReset reports a transport error from a connection the server side
// closed or reset, before any HTTP answer.
func isConnReset(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "connection reset by peer") || strings.HasSuffix(msg, ": EOF") || strings.Contains(msg, "broken pipe")
}

// pgConnections counts the server's connections tagged with app ("" for
// SQLite runs, which have none to count).
func pgConnections(t *testing.T, app string) int {
	t.Helper()
	if app == "" {
		return 0
	}
	db, err := sql.Open("pgx", os.Getenv(pgDSNEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
