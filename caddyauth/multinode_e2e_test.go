package caddyauth_test

import (
	"database/sql"
	"fmt"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/redistest"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Many nodes: real Caddy processes, built from this checkout, sharing one
// PostgreSQL schema and one Redis, as a deployment behind a load balancer
// would. Their clocks are the machine's, so TOTP codes are computed at real
// time: the nodes run with totp_skew 3 (the largest allowed), and each
// successful verification uses the code of the next unused step, up to
// three steps ahead of now; only a test that needed more would wait for the
// clock (DESIGN decision 3 keeps the accepted steps forward-only).

// caddyBuild is the Caddy binary of this test run, built once.
var caddyBuild struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// removeCaddyBuild deletes the binary caddyBinary built, if any; TestMain
// (in mailpit_test.go) calls it after the run.
func removeCaddyBuild() {
	if caddyBuild.dir != "" {
		os.RemoveAll(caddyBuild.dir)
	}
}

// caddyBinary builds ./cmd/caddy of this module (once per test run) and
// returns its path.
func caddyBinary(t *testing.T) string {
	t.Helper()
	caddyBuild.once.Do(func() {
		root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			caddyBuild.err = fmt.Errorf("finding the module root: %v", err)
			return
		}
		dir, err := os.MkdirTemp("", "caddy-jwt-allauth-e2e-")
		if err != nil {
			caddyBuild.err = err
			return
		}
		caddyBuild.dir = dir
		path := filepath.Join(dir, "caddy")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/caddy")
		cmd.Dir = strings.TrimSpace(string(root))
		if out, err := cmd.CombinedOutput(); err != nil {
			caddyBuild.err = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
			return
		}
		caddyBuild.path = path
	})
	if caddyBuild.err != nil {
		t.Fatal(caddyBuild.err)
	}
	return caddyBuild.path
}

// needCluster skips unless both PostgreSQL and Redis are configured, and
// fails if either is configured but unreachable.
func needCluster(t *testing.T) {
	t.Helper()
	if os.Getenv(pgDSNEnv) == "" || os.Getenv(redistest.URLEnv) == "" {
		t.Skipf("%s and %s are both needed for the many-node tests", pgDSNEnv, redistest.URLEnv)
	}
	redistest.URL(t)
}

// node is one Caddy process.
type node struct {
	*site
	name, bin, cfg, logPath string
	env                     []string

	cmd    *exec.Cmd
	exited chan struct{}
}

// clusterConfig is the Caddyfile every node runs, on its own port: the
// store, Caddy's storage (where the keys live, shared as a cluster shares
// it for certificates) and Redis come from the environment.
func clusterConfig(port, redisPrefix string) string {
	return fmt.Sprintf(`{
	admin off
	storage file_system {$JWT_ALLAUTH_TEST_NODE_STORAGE}
	http_port %[1]s
	auto_https off
	persist_config off
	grace_period 2s
	log {
		level WARN
	}
	jwt_allauth {
		store postgres {env.JWT_ALLAUTH_TEST_NODE_DSN}
		public_url http://127.0.0.1:%[1]s
		cookie_insecure
		mfa_totp_mode optional
		totp_skew 3
		mfa_challenge_max_attempts 0
		mfa_max_attempts 4
		mfa_lockout 10m
		rate_limit redis {env.%[2]s} {
			key_prefix %[3]s
		}
		throttle login_email 4 1m
		throttle login_ip off
		throttle mfa_verify_ip off
	}
}

http://127.0.0.1:%[1]s {
%[4]s
}
`, port, redistest.URLEnv, redisPrefix, defaultBody)
}

// newNode writes a node's Caddyfile; start runs it.
func newNode(t *testing.T, name, dsn, storage, redisPrefix string) *node {
	t.Helper()
	dir := t.TempDir()
	port := freePort()
	n := &node{
		name: name, bin: caddyBinary(t),
		cfg:     filepath.Join(dir, "Caddyfile"),
		logPath: filepath.Join(dir, "caddy.log"),
		env: append(os.Environ(), "JWT_ALLAUTH_TEST_NODE_DSN="+dsn, "JWT_ALLAUTH_TEST_NODE_STORAGE="+storage,
			"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config")),
	}
	if err := os.WriteFile(n.cfg, []byte(clusterConfig(port, redisPrefix)), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	n.site = &site{t: t, base: "http://127.0.0.1:" + port, client: &http.Client{
		Transport:     tr,
		Timeout:       20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		n.kill()
		if t.Failed() {
			if out, err := os.ReadFile(n.logPath); err == nil {
				t.Logf("node %s output:\n%s", n.name, out)
			}
		}
	})
	return n
}

// launch starts the process; ready waits until it serves.
func (n *node) launch() {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	fmt.Fprintf(logf, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(n.bin, "run", "--config", n.cfg, "--adapter", "caddyfile")
	cmd.Env = n.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("starting node %s: %v", n.name, err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(n.exited)
	}()
}

func (n *node) ready() {
	n.t.Helper()
	n.client.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	probe := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case <-n.exited:
			n.t.Fatalf("node %s exited while starting", n.name)
		default:
		}
		if res, err := probe.Get(n.base + "/"); err == nil {
			res.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("node %s does not answer on %s", n.name, n.base)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *node) start() {
	n.t.Helper()
	n.launch()
	n.ready()
}

// stop sends sig and waits for the process to end (killing it after 15 s).
func (n *node) stop(sig syscall.Signal) {
	n.t.Helper()
	if n.cmd == nil {
		return
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("signalling node %s: %v", n.name, err)
	}
	select {
	case <-n.exited:
	case <-time.After(15 * time.Second):
		n.kill()
		n.t.Fatalf("node %s did not end on %v", n.name, sig)
	}
	n.cmd = nil
	n.client.CloseIdleConnections()
}

func (n *node) kill() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Kill()
	<-n.exited
	n.cmd = nil
}

// createUser adds a user with the CLI, as an operator would.
func (n *node) createUser(email, password string) {
	n.t.Helper()
	cmd := exec.Command(n.bin, "jwt-allauth", "create-user", "--config", n.cfg, "--adapter", "caddyfile", "--email", email, "--password-stdin")
	cmd.Env = n.env
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("create-user %s: %v\n%s", email, err, out)
	}
}

// stepCode is the TOTP code of secret for a time step.
func stepCode(t *testing.T, secret string, step int64) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0), totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func realStep() int64 { return time.Now().Unix() / 30 }

// authenticator is a user's TOTP as an app holds it, with the next step
// whose code has not been accepted yet.
type authenticator struct {
	secret string
	next   int64
}

// skew is the nodes' totp_skew.
const skew = 3

// code returns the code of the next unused step and spends it: the step
// after the last accepted one, moved up if the clock left it behind the
// window, and waited for if it is still ahead of the window.
func (a *authenticator) code(t *testing.T) string {
	t.Helper()
	c := a.peek(t)
	a.next++
	return c
}

// peek returns the code code would, without spending it: for requests that
// must be refused whatever the code.
func (a *authenticator) peek(t *testing.T) string {
	t.Helper()
	a.next = max(a.next, realStep()-skew+1)
	for a.next > realStep()+skew {
		time.Sleep(time.Until(time.Unix((realStep()+1)*30, 0)) + 50*time.Millisecond)
	}
	return stepCode(t, a.secret, a.next)
}

// wrong returns six digits that no step near now matches.
func (a *authenticator) wrong(t *testing.T) string {
	t.Helper()
	near := map[string]bool{}
	for s := realStep() - skew - 2; s <= realStep()+skew+2; s++ {
		near[stepCode(t, a.secret, s)] = true
	}
	for n := 246813; ; n++ {
		if c := fmt.Sprintf("%06d", n%1000000); !near[c] {
			return c
		}
	}
}

// enrolOn logs the user in on n and activates TOTP there; it returns the
// authenticator and the access token of that login.
func enrolOn(t *testing.T, n *node, email string) (*authenticator, string) {
	t.Helper()
	access, _ := n.login(email, mfaPass)
	secret := n.post("/auth/mfa/setup/", nil, bearer(access)).expect(t, 200).str("secret")
	step := realStep()
	r := n.post("/auth/mfa/activate/", map[string]string{"code": stepCode(t, secret, step)}, bearer(access)).expect(t, 200)
	recoveryCodes(t, r)
	return &authenticator{secret: secret, next: step + 1}, access
}

// bind makes the nodes' helpers report to t until the returned function
// puts the previous test back.
func bind(t *testing.T, nodes ...*node) func() {
	prev := make([]*testing.T, len(nodes))
	for i, n := range nodes {
		prev[i], n.site.t = n.site.t, t
	}
	return func() {
		for i, n := range nodes {
			n.site.t = prev[i]
		}
	}
}

// TestMultiNodeE2E runs two Caddy processes on one PostgreSQL schema and
// one Redis: whatever one node starts, the other continues, and every
// counter is shared.
func TestMultiNodeE2E(t *testing.T) {
	needCluster(t)
	dsn := freshSchemaDSN(t)
	prefix := "e2e_nodes_" + randomHex(t, 6) + ":"
	storage := t.TempDir()
	a, b := newNode(t, "A", dsn, storage, prefix), newNode(t, "B", dsn, storage, prefix)
	a.launch()
	b.launch()
	a.ready()
	b.ready()

	t.Run("keys_shared", func(t *testing.T) {
		defer bind(t, a, b)()
		const email = "keys@world.com"
		a.createUser(email, userPass)
		access, _ := a.login(email, userPass)
		if r := b.get("/", bearer(access)).expect(t, 200); !strings.HasPrefix(string(r.raw), "user=") {
			t.Fatalf("node B on node A's token: %s", r.raw)
		}
		ja := a.get("/auth/.well-known/jwks.json").expect(t, 200)
		jb := b.get("/auth/.well-known/jwks.json").expect(t, 200)
		if string(ja.raw) != string(jb.raw) || !strings.Contains(string(ja.raw), `"EdDSA"`) {
			t.Fatalf("the nodes publish different keys:\n%s\n%s", ja.raw, jb.raw)
		}
	})

	const email = "nodes@world.com"
	var refresh string
	t.Run("M5_challenge_from_A_verified_on_B", func(t *testing.T) {
		defer bind(t, a, b)()
		a.createUser(email, mfaPass)
		totpApp, _ := enrolOn(t, a, email)
		ch := a.challenge(email)
		code := totpApp.code(t)
		refused(t, b.verify(ch, totpApp.wrong(t)), 400).detail(t, 400, "Invalid code.")
		_, refresh = b.verify(ch, code).session(t, false)
		// Spent on B, so gone on A too.
		refused(t, a.verify(ch, totpApp.peek(t)), 400).detail(t, 400, "Challenge expired or invalid.")
		// The code B accepted is spent on A for a new challenge.
		refused(t, a.verify(b.challenge(email), code), 400).detail(t, 400, "Invalid code.")
	})

	t.Run("K2_refresh_rotated_on_A_dead_on_B", func(t *testing.T) {
		defer bind(t, a, b)()
		if refresh == "" {
			t.Skip("no session from the previous case")
		}
		r := a.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		rotated := mustCookie(t, r)
		// The old token is dead on B, and its replay there ends the
		// session for A as well.
		refused(t, b.post("/auth/refresh/", nil, refreshCookie(refresh)), 401)
		refused(t, a.post("/auth/refresh/", nil, refreshCookie(rotated)), 401)
	})

	t.Run("M8_lockout_counts_across_nodes", func(t *testing.T) {
		defer bind(t, a, b)()
		const email = "lockout-nodes@world.com"
		b.createUser(email, mfaPass)
		totpApp, _ := enrolOn(t, b, email)
		c1, c2 := a.challenge(email), b.challenge(email)
		bad := totpApp.wrong(t)
		// mfa_max_attempts 4, the failures split between the nodes.
		refused(t, a.verify(c1, bad), 400).detail(t, 400, "Invalid code.")
		refused(t, b.verify(c2, bad), 400).detail(t, 400, "Invalid code.")
		refused(t, b.verify(c1, bad), 400).detail(t, 400, "Invalid code.")
		refused(t, a.verify(c2, bad), 429).lockedOut(t, 590, 600)
		// Locked on both: the live challenges died, and the right password
		// gets the lockout on the other node.
		refused(t, b.verify(c1, totpApp.peek(t)), 400).detail(t, 400, "Challenge expired or invalid.")
		b.loginLockedOut(email, 590, 600)
	})

	t.Run("M9_burst_across_nodes", func(t *testing.T) {
		defer bind(t, a, b)()
		const email = "burst-nodes@world.com"
		a.createUser(email, mfaPass)
		totpApp, _ := enrolOn(t, a, email)
		ids := []string{a.challenge(email), b.challenge(email), a.challenge(email), b.challenge(email)}
		bad := totpApp.wrong(t)
		// Wrong codes at once on four challenges, half to each node:
		// mfa_max_attempts 4 codes compared in all, then the lockout.
		got := tally(t, burst(burstSize, func(i int) reply {
			n := a
			if i%2 == 1 {
				n = b
			}
			return n.verify(ids[i%len(ids)], bad)
		}))
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var rows int
		if err := db.QueryRow(`SELECT count(*) FROM tokens JOIN users ON users.id = tokens.user_id
			WHERE users.email = $1 AND tokens.purpose = 'mfa_login_attempt'`, email).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 4 || got["Invalid code."] != 3 {
			t.Fatalf("%d failure rows, answers %v; want 4 rows, 3 %q", rows, got, "Invalid code.")
		}
		a.loginLockedOut(email, 590, 600)
		b.loginLockedOut(email, 590, 600)
	})

	t.Run("redis_throttle_across_nodes", func(t *testing.T) {
		defer bind(t, a, b)()
		body := map[string]string{"email": "throttled-nodes@world.com", "password": "Wr0ngPassword!"}
		for i, n := range []*node{a, b, a, b} {
			if r := n.post("/auth/login/", body); r.status != 401 {
				t.Fatalf("attempt %d on node %s: %d %s", i+1, n.name, r.status, r.raw)
			}
		}
		expectThrottled(t, refused(t, a.post("/auth/login/", body), 429))
		expectThrottled(t, refused(t, b.post("/auth/login/", body), 429))
	})
}

// TestRestartMidFlowE2E is X6 with real processes: a challenge created on a
// node survives that node being killed (SIGKILL) or stopped (SIGTERM) and
// started again, is still single-use, and tokens issued before the restart
// still pass the guard (the Ed25519 key lives in Caddy's storage).
func TestRestartMidFlowE2E(t *testing.T) {
	needCluster(t)
	dsn := freshSchemaDSN(t)
	prefix := "e2e_restart_" + randomHex(t, 6) + ":"
	storage := t.TempDir()
	a, b := newNode(t, "A", dsn, storage, prefix), newNode(t, "B", dsn, storage, prefix)
	a.start()
	b.start()
	const email = "restart@world.com"
	a.createUser(email, mfaPass)
	totpApp, access := enrolOn(t, a, email)
	for _, c := range []struct {
		name string
		sig  syscall.Signal
	}{{"X6_sigkill", syscall.SIGKILL}, {"X6_sigterm", syscall.SIGTERM}} {
		t.Run(c.name, func(t *testing.T) {
			defer bind(t, a, b)()
			ch := a.challenge(email)
			a.stop(c.sig)
			// B keeps serving meanwhile, on the same key.
			b.get("/", bearer(access)).expect(t, 200)
			a.start()
			// A token issued before the restart still passes, the challenge
			// made before it still verifies, once.
			a.get("/", bearer(access)).expect(t, 200)
			access, _ = a.verify(ch, totpApp.code(t)).session(t, false)
			refused(t, a.verify(ch, totpApp.peek(t)), 400).detail(t, 400, "Challenge expired or invalid.")
		})
	}
}
