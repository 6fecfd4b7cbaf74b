package caddyauth_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// A request held open half way, a security change made meanwhile, then the
// request released: whatever the held request writes, the change stays.
// Each race is driven in this order, deterministically: the test waits
// until the server's handler is parked at a known frame (reading the body,
// waiting for a hashing slot) before it acts.

// heldRequest is a request sent on a raw connection up to half of its
// body; finish sends the rest and reads the answer.
type heldRequest struct {
	t    *testing.T
	conn net.Conn
	rest string
}

// holdRequest sends method path with headers ("Name: value") and the
// first half of a JSON body, and leaves the server waiting for the rest.
func holdRequest(t *testing.T, method, path, body string, headers ...string) *heldRequest {
	t.Helper()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+testPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n", method, path, testPort)
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	half := len(body) / 2
	b.WriteString("\r\n" + body[:half])
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	return &heldRequest{t: t, conn: conn, rest: body[half:]}
}

// finish sends the rest of the body and returns the answer.
func (h *heldRequest) finish() reply {
	h.t.Helper()
	if _, err := io.WriteString(h.conn, h.rest); err != nil {
		h.t.Fatal(err)
	}
	_ = h.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(h.conn), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	out := reply{status: res.StatusCode, header: res.Header, raw: raw}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(raw, &out.body)
	}
	return out
}

// waitForFrame returns once a goroutine of this process (the server's
// handler) is in every function frames names, e.g. "web.readForm(".
func waitForFrame(t *testing.T, frames ...string) {
	t.Helper()
	buf := make([]byte, 8<<20)
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range bytes.Split(buf[:n], []byte("\n\n")) {
			all := true
			for _, f := range frames {
				all = all && bytes.Contains(g, []byte(f))
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine reached %s", strings.Join(frames, " and "))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// frameReadForm is where a handler waits for a request body.
const frameReadForm = "web.readForm("

// holdProfilePatch logs email in and holds a PATCH /auth/user/ until its
// handler waits for the rest of the body (having read the account, on the
// code this guards against).
func (s *site) holdProfilePatch(email, password string) *heldRequest {
	s.t.Helper()
	access, _ := s.login(email, password)
	h := holdRequest(s.t, http.MethodPatch, "/auth/user/", `{"first_name": "Renamed", "last_name": "Late"}`, bearer(access))
	waitForFrame(s.t, frameReadForm)
	return h
}

// patched checks that the held PATCH went through and wrote the names.
func patched(t *testing.T, r reply, id int64) account.User {
	t.Helper()
	r.expect(t, 200)
	if r.str("first_name") != "Renamed" || r.str("last_name") != "Late" {
		t.Fatalf("PATCH answered %s", r.raw)
	}
	u, err := activeStore(t).UserByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if u.FirstName != "Renamed" || u.LastName != "Late" {
		t.Fatalf("PATCH did not write the names: %+v", u)
	}
	return u
}

// TestStaleProfileWriteKeepsNewPasswordE2E: a PATCH /user/ whose body
// trickles in while the password changes does not bring the old password
// back.
func TestStaleProfileWriteKeepsNewPasswordE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		held := s.holdProfilePatch(userEmail, userPass)

		const newPass = "N3w-Passw0rd-after"
		h, err := caddyauth.HashPassword(newPass)
		if err != nil {
			t.Fatal(err)
		}
		if err := activeStore(t).SetPasswordHash(context.Background(), u.ID, h); err != nil {
			t.Fatal(err)
		}

		patched(t, held.finish(), u.ID)
		s.login(userEmail, newPass)
		r := s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
		if r.body["code"] != "incorrect_credentials" {
			t.Fatalf("old password: %s", r.raw)
		}
	})
}

// TestStaleProfileWriteKeepsDisabledE2E: the same stale PATCH does not
// re-enable an account disabled meanwhile.
func TestStaleProfileWriteKeepsDisabledE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		held := s.holdProfilePatch(userEmail, userPass)

		if err := activeStore(t).SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}

		if got := patched(t, held.finish(), u.ID); got.IsActive {
			t.Fatal("the PATCH re-enabled the account")
		}
		r := s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
		if r.str("detail") != "No active account found with the given credentials" {
			t.Fatalf("login of the disabled account: %s", r.raw)
		}
	})
}

// TestStaleProfileWriteKeepsDemotionE2E: the same stale PATCH does not
// restore a role taken away meanwhile by `caddy jwt-allauth set-role`.
func TestStaleProfileWriteKeepsDemotionE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := caddyfile(store, "", defaultBody)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		s := startCaddy(t, cf)
		u := mustCreateUser(t, userEmail, userPass, account.RoleStaff)
		held := s.holdProfilePatch(userEmail, userPass)

		if out, err := runCLI(t, "", "set-role", "--email", userEmail, "--role", "0", "--config", path, "--adapter", "caddyfile"); err != nil {
			t.Fatalf("set-role: %v\n%s", err, out)
		}

		if got := patched(t, held.finish(), u.ID); got.Role != account.RoleUser {
			t.Fatalf("the PATCH restored role %d", got.Role)
		}
		access, _ := s.login(userEmail, userPass)
		if role := claims(t, access)["role"]; role != float64(account.RoleUser) {
			t.Fatalf("role claim after demotion: %v", role)
		}
	})
}

// TestSlowLoginKeepsDisabledE2E: a login that read the account, then
// waited for a hashing slot while the account was disabled, opens no
// session and does not re-enable the account.
func TestSlowLoginKeepsDisabledE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)

		release, err := caddyauth.HoldHashSlots()
		if err != nil {
			t.Fatal(err)
		}
		released := false
		defer func() {
			if !released {
				release()
			}
		}()
		done := s.slowLogin(userEmail, userPass)

		st := activeStore(t)
		ctx := context.Background()
		if err := st.InTx(ctx, func(tx account.Store) error {
			if err := tx.SetActive(ctx, u.ID, false); err != nil {
				return err
			}
			_, err := tx.RevokeUserSessions(ctx, u.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		release()
		released = true

		r := <-done
		r.expect(t, 401)
		if r.str("detail") != "No active account found with the given credentials" {
			t.Fatalf("slow login of a disabled account: %s", r.raw)
		}
		if _, ok := r.cookie("refresh_token"); ok {
			t.Fatal("the slow login opened a session")
		}
		got, err := st.UserByID(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.IsActive || !got.LastLogin.IsZero() {
			t.Fatalf("the slow login wrote the account: %+v", got)
		}
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
	})
}

// slowLogin starts a login while the test holds every hashing slot and
// returns, once the login has read the account and waits for a slot, the
// channel its answer comes on.
func (s *site) slowLogin(email, password string) <-chan reply {
	s.t.Helper()
	done := make(chan reply, 1)
	go func() {
		r, err := s.try(http.MethodPost, "/auth/login/", map[string]string{"email": email, "password": password})
		if err != nil {
			r = reply{raw: []byte(err.Error())}
		}
		done <- r
	}()
	waitForFrame(s.t, "account.(*Hasher).Hold(")
	return done
}

// TestRehashOnLoginKeepsNewPasswordE2E: a login that verified an outdated
// hash, and writes its upgrade only after a concurrent password change,
// neither brings the old password back nor opens a session.
func TestRehashOnLoginKeepsNewPasswordE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		st := activeStore(t)
		ctx := context.Background()
		legacy, err := bcrypt.GenerateFromPassword([]byte(userPass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetPasswordHash(ctx, u.ID, string(legacy)); err != nil {
			t.Fatal(err)
		}
		const newPass = "N3w-Passw0rd-after"
		newHash, err := caddyauth.HashPassword(newPass)
		if err != nil {
			t.Fatal(err)
		}

		release, err := caddyauth.HoldHashSlots()
		if err != nil {
			t.Fatal(err)
		}
		done := s.slowLogin(userEmail, userPass)
		// The row locked by a password change, the login verifies and
		// hashes, then waits to write its upgrade; only then the new
		// password is written and committed.
		locked, proceed, changed := make(chan struct{}), make(chan struct{}), make(chan error, 1)
		go func() {
			changed <- st.InTx(ctx, func(tx account.Store) error {
				if _, err := tx.UserForUpdate(ctx, u.ID); err != nil {
					return err
				}
				close(locked)
				<-proceed
				return tx.SetPasswordHash(ctx, u.ID, newHash)
			})
		}()
		select {
		case <-locked:
		case err := <-changed:
			release()
			t.Fatalf("locking the row: %v", err)
		}
		release()
		waitForFrame(t, "account.(*Sessions).authenticate(", "sqlstore.(*Store).")
		close(proceed)
		if err := <-changed; err != nil {
			t.Fatal(err)
		}

		r := <-done
		r.expect(t, 401)
		if r.body["code"] != "incorrect_credentials" {
			t.Fatalf("login that verified the replaced password: %s", r.raw)
		}
		s.login(userEmail, newPass)
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
	})
}

// TestStalePasswordChangeKeepsResetE2E: a password change whose body
// trickles in while the password is reset checks the old password against
// the new hash, not the one stored when the request began.
func TestStalePasswordChangeKeepsResetE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		const attackerPass, resetPass = "Att4cker-Passw0rd", "R3set-Passw0rd-new"
		body, err := json.Marshal(map[string]string{"old_password": userPass, "new_password1": attackerPass, "new_password2": attackerPass})
		if err != nil {
			t.Fatal(err)
		}
		held := holdRequest(t, http.MethodPost, "/auth/password/change/", string(body), bearer(access))
		waitForFrame(t, frameReadForm)

		h, err := caddyauth.HashPassword(resetPass)
		if err != nil {
			t.Fatal(err)
		}
		if err := activeStore(t).SetPasswordHash(context.Background(), u.ID, h); err != nil {
			t.Fatal(err)
		}

		r := held.finish().expect(t, 400)
		if r.fieldMsg("old_password") == "" {
			t.Fatalf("stale password change: %s", r.raw)
		}
		s.login(userEmail, resetPass)
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": attackerPass}).expect(t, 401)
	})
}
