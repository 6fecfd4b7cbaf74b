package caddyauth_test

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Account deletion end to end: DELETE {prefix}/user/, and the
// export-user and delete-user commands (README, "Deleting an account").

// userRows counts, in every table of the running store that has a user_id
// column (and in users, by id), the rows of the user id. It fails unless
// it counted at least the tables of want, so a renamed table is noticed.
func userRows(t *testing.T, db *sql.DB, id int64, want ...string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range tableNames(t, db) {
		col := "user_id"
		if table == "users" {
			col = "id"
		}
		var n int
		// A table without the column fails the statement: not a table of
		// users' rows.
		if err := db.QueryRow("SELECT COUNT(*) FROM "+table+" WHERE "+col+" = $1", id).Scan(&n); err != nil {
			continue
		}
		out[table] = n
	}
	for _, table := range want {
		if _, ok := out[table]; !ok {
			t.Fatalf("table %s not counted (counted %v)", table, out)
		}
	}
	return out
}

// userTables are the tables that hold rows of a user.
var userTables = []string{"users", "refresh_tokens", "tokens", "authenticators", "recovery_codes", "social_accounts", "passkeys", "personal_tokens"}

func TestDeleteAccountE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := caddyfile(store, passkeyOptions+"\n\t\temail_verification none", defaultBody)
		path := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := []string{"--config", path, "--adapter", "caddyfile"}
		s := startCaddy(t, cf)
		const email = "gone@example.com"

		// An account with everything: TOTP and recovery codes, a passkey, a
		// personal access token, a social link (seeded: the flows have tests
		// of their own), two sessions, and (below) a failed MFA attempt.
		u := mustCreateUser(t, email, userPass, 0)
		access, refresh := s.login(email, userPass)
		enr := s.enrol(access)
		s.registerPasskey(access, "Laptop")
		pat := s.makePAT(access, map[string]any{"name": "script", "expires_in_days": 1}).str("token")
		if _, err := activeStore(t).CreateSocialAccount(t.Context(), account.SocialAccount{UserID: u.ID, Provider: "github", UID: "583231", Created: realmNow(t)}); err != nil {
			t.Fatal(err)
		}
		nextStep(t)
		ch := s.challenge(email)
		s.verify(ch, wrongCode(t, enr.secret)).expect(t, http.StatusBadRequest)
		access2, refresh2 := s.verify(ch, totpNow(t, enr.secret)).session(t, false)
		db := storeDB(t)
		// Another user's rows stay.
		other := mustCreateUser(t, "stays@example.com", userPass, 0)
		s.login("stays@example.com", userPass)

		// The export: the data, and no secret.
		out, err := runCLI(t, "", append([]string{"export-user", "--email", email}, cfg...)...)
		if err != nil {
			t.Fatalf("export-user: %v\n%s", err, out)
		}
		var ex map[string]any
		if err := json.Unmarshal([]byte(out), &ex); err != nil {
			t.Fatalf("export-user printed no JSON: %v\n%s", err, out)
		}
		if ex["email"] != email || len(ex["sessions"].([]any)) != 2 || len(ex["passkeys"].([]any)) != 1 ||
			!strings.Contains(out, `"provider": "github"`) || !strings.Contains(out, `"name": "Laptop"`) || !strings.Contains(out, `"type": "totp"`) ||
			len(ex["personal_tokens"].([]any)) != 1 {
			t.Fatalf("export-user:\n%s", out)
		}
		secrets := append([]string{"$argon2", enr.secret, refresh, refresh2, access, access2, pat}, enr.recovery...)
		for _, tok := range []string{refresh, refresh2} {
			secrets = append(secrets, claims(t, tok)["jti"].(string), claims(t, tok)["session"].(string))
		}
		for _, secret := range secrets {
			if strings.Contains(out, secret) {
				t.Fatalf("export-user printed the secret %q:\n%s", secret, out)
			}
		}

		// What the endpoint refuses: no password, a wrong one, no code, a
		// wrong code (an MFA failure: the verify's success cleared the one
		// before).
		s.req(http.MethodDelete, "/auth/user/", nil).expect(t, http.StatusUnauthorized)
		r := s.req(http.MethodDelete, "/auth/user/", map[string]string{}, bearer(access)).expect(t, http.StatusBadRequest)
		if r.fieldMsg("password") != "This field is required." {
			t.Fatalf("no password: %s", r.raw)
		}
		s.req(http.MethodDelete, "/auth/user/", map[string]string{"password": "Wr0ng-password"}, bearer(access)).detail(t, http.StatusBadRequest, "Invalid password.")
		r = s.req(http.MethodDelete, "/auth/user/", map[string]string{"password": userPass}, bearer(access)).expect(t, http.StatusBadRequest)
		if !strings.Contains(r.fieldMsg("code"), "second factor") {
			t.Fatalf("no code: %s", r.raw)
		}
		nextStep(t)
		s.req(http.MethodDelete, "/auth/user/", map[string]string{"password": userPass, "code": wrongCode(t, enr.secret)}, bearer(access)).
			detail(t, http.StatusBadRequest, "Invalid code.")
		if n := attempts(t, u.ID); n != 1 {
			t.Fatalf("%d MFA failures recorded, want 1", n)
		}
		before := userRows(t, db, u.ID, userTables...)
		for _, table := range userTables {
			if before[table] == 0 {
				t.Fatalf("no row of the user in %s before the deletion: %v", table, before)
			}
		}

		// The right password and code: 204, the refresh cookie cleared.
		r = s.req(http.MethodDelete, "/auth/user/", map[string]string{"password": userPass, "code": totpNow(t, enr.secret)}, bearer(access)).expect(t, http.StatusNoContent)
		if c, ok := r.cookie("refresh_token"); !ok || c.MaxAge >= 0 {
			t.Fatalf("the refresh cookie is not cleared: %v", r.header)
		}
		for table, n := range userRows(t, db, u.ID, userTables...) {
			if n != 0 {
				t.Errorf("%d rows of the deleted user left in %s", n, table)
			}
		}
		if n := userRows(t, db, other.ID)["refresh_tokens"]; n != 1 {
			t.Fatalf("the other user has %d sessions left, want 1", n)
		}
		// Neither session refreshes; the token is refused.
		for _, tok := range []string{refresh, refresh2} {
			s.post("/auth/refresh/", nil, refreshCookie(tok)).expect(t, http.StatusUnauthorized)
		}
		s.req(http.MethodDelete, "/auth/user/", map[string]string{"password": userPass}, bearer(access2)).expect(t, http.StatusUnauthorized)
		s.get("/auth/user/", bearer(access2)).expect(t, http.StatusUnauthorized)
		if _, err := runCLI(t, "", append([]string{"export-user", "--email", email}, cfg...)...); err == nil {
			t.Fatal("export-user of a deleted user succeeded")
		}

		// The address is free: a new sign-up takes it.
		s.post("/auth/registration/", map[string]string{"email": email, "password1": userPass, "password2": userPass,
			"first_name": "New", "last_name": "Owner"}).expect(t, http.StatusCreated)
		fresh := mustUser(t, email)
		if fresh.ID == u.ID {
			t.Fatalf("the new account took the deleted id %d", u.ID)
		}

		// An administrator deletes from the command line, without a
		// password.
		out, err = runCLI(t, "", append([]string{"delete-user", "--email", "stays@example.com"}, cfg...)...)
		if err != nil || !strings.Contains(out, "deleted user") {
			t.Fatalf("delete-user: %v\n%s", err, out)
		}
		for table, n := range userRows(t, db, other.ID, userTables...) {
			if n != 0 {
				t.Errorf("%d rows of the user deleted by delete-user left in %s", n, table)
			}
		}
		if _, err := runCLI(t, "", append([]string{"delete-user", "--email", "stays@example.com"}, cfg...)...); err == nil || !strings.Contains(err.Error(), "no user") {
			t.Fatalf("deleting a deleted user: %v", err)
		}
	})
}
