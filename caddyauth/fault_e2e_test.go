package caddyauth_test

import (
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// cutProxy forwards loopback TCP connections to a target until it is cut:
// then it drops every open connection and accepts new ones without ever
// answering, as a database behind a dead network does. Healing it makes it
// forward again.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		if cut {
			continue // hold it open, silent
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// setCut cuts (true) or heals (false) the link; cutting drops every open
// connection.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// TestDatabaseOutageE2E cuts PostgreSQL away from a running Caddy: the
// account endpoints answer 503 JSON within their deadline (never a hang,
// never a token), the guard keeps validating tokens, a guard with
// session_check fails closed with 503, and everything works again once the
// database is back, without a restart.
func TestDatabaseOutageE2E(t *testing.T) {
	base := os.Getenv(pgDSNEnv)
	if base == "" {
		t.Skip(pgDSNEnv + " is not set: the outage test needs PostgreSQL")
	}
	dsn := freshSchemaDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, u.Host)
	u.Host = proxy.addr()
	body := defaultBody + `
	handle /checked {
		jwt_allauth_guard {
			session_check
		}
		respond "checked"
	}`
	// The guard directive above the handle applies to /checked too; the
	// inner one adds the session check.
	s := startCaddy(t, caddyfile("store postgres "+u.String()+" {\n\t\t\tquery_timeout 1s\n\t\t}", "", body))
	mustCreateUser(t, userEmail, userPass, 0)
	access, refresh := s.login(userEmail, userPass)
	s.get("/checked", bearer(access)).expect(t, 200)

	proxy.setCut(true)
	advance(t, 3*time.Second) // past the session-check cache
	for _, tc := range []struct {
		name string
		do   func() reply
	}{
		{"login", func() reply {
			return s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass})
		}},
		{"refresh", func() reply { return s.post("/auth/refresh/", nil, refreshCookie(refresh)) }},
		{"user", func() reply { return s.get("/auth/user/", bearer(access)) }},
		{"session-checked guard", func() reply { return s.get("/checked", bearer(access)) }},
	} {
		start := time.Now()
		r := tc.do()
		took := time.Since(start)
		if r.status != 503 || r.str("code") != "service_unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("%s during the outage: %d %s", tc.name, r.status, r.raw)
		}
		if strings.Contains(string(r.raw), "access") || strings.Contains(string(r.raw), "postgres") {
			t.Fatalf("%s: the 503 body says too much: %s", tc.name, r.raw)
		}
		if took > 5*time.Second {
			t.Fatalf("%s took %s: the query deadline did not hold", tc.name, took)
		}
	}
	// The stateless guard does not need the database.
	r := s.get("/", bearer(access)).expect(t, 200)
	if !strings.HasPrefix(string(r.raw), "user=") {
		t.Fatalf("guard during the outage: %q", r.raw)
	}

	proxy.setCut(false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass})
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login still failing after the database came back: %d %s", r.status, r.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
	advance(t, 3*time.Second)
	s.get("/checked", bearer(access)).expect(t, 200)
}
