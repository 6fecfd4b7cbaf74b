// Package storetest is a conformance suite for account.Store
// implementations. A backend's tests call Run with a function that returns
// a fresh, empty, migrated store.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Run runs every conformance test against stores made by newStore. Each
// call of newStore must return a new, empty store; Run calls it once per
// group of subtests.
func Run(t *testing.T, newStore func(t *testing.T) account.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s account.Store)
	}{
		{"Users", testUsers},
		{"UserWrites", testUserWrites},
		{"UserForUpdate", testUserForUpdate},
		{"DeleteUserCascades", testDeleteUserCascades},
		{"SearchUsers", testSearchUsers},
		{"Refresh", testRefresh},
		{"RotateRefresh", testRotateRefresh},
		{"RotateRefreshDisabled", testRotateRefreshDisabled},
		{"SessionDetails", testSessionDetails},
		{"UserRefreshTokens", testUserRefreshTokens},
		{"DeleteRefresh", testDeleteRefresh},
		{"Tokens", testTokens},
		{"FindToken", testFindToken},
		{"CreateTokenWhile", testCreateTokenWhile},
		{"ConsumeToken", testConsumeToken},
		{"ReplaceToken", testReplaceToken},
		{"DeleteTokens", testDeleteTokens},
		{"Authenticators", testAuthenticators},
		{"AdvanceTOTPStep", testAdvanceTOTPStep},
		{"RecoveryCodes", testRecoveryCodes},
		{"DeleteAuthenticators", testDeleteAuthenticators},
		{"SocialAccounts", testSocialAccounts},
		{"Passkeys", testPasskeys},
		{"PersonalTokens", testPersonalTokens},
		{"Settings", testSettings},
		{"ResealTOTP", testResealTOTP},
		{"InTx", testInTx},
		{"CommitUnflushed", testCommitUnflushed},
		{"CanceledContext", testCanceledContext},
		{"RaceConsumeToken", testRaceConsumeToken},
		{"RaceRotateRefresh", testRaceRotateRefresh},
		{"RaceRotateRevoke", testRaceRotateRevoke},
		{"RaceAdvanceTOTPStep", testRaceAdvanceTOTPStep},
		{"RaceConsumeRecoveryCode", testRaceConsumeRecoveryCode},
		{"RaceLoadOrStoreSetting", testRaceLoadOrStoreSetting},
		{"RaceUserForUpdate", testRaceUserForUpdate},
		{"RaceUserForUpdateTokenBudget", testRaceUserForUpdateTokenBudget},
		{"RaceCreateSocialAccount", testRaceCreateSocialAccount},
		{"RaceUsePasskey", testRaceUsePasskey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// racers is how many goroutines the race tests start.
const racers = 50

// now is a time with the microsecond precision stores keep.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustUser(t *testing.T, s account.Store, email string) int64 {
	t.Helper()
	id, err := s.CreateUser(ctx(t), account.User{Email: email, IsActive: true, DateJoined: now()})
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", email, err)
	}
	return id
}

// mustTokens creates rows in the token table.
func mustTokens(t *testing.T, s account.Store, rows ...account.Token) {
	t.Helper()
	for _, row := range rows {
		if _, err := s.CreateToken(ctx(t), row); err != nil {
			t.Fatalf("CreateToken(%+v): %v", row, err)
		}
	}
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: error = %v, want %v", what, got, want)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantInt(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %d, want %d", what, got, want)
	}
}

func refresh(user int64, jti, session string, enabled bool) account.RefreshToken {
	n := now()
	return account.RefreshToken{
		JTI: jti, Session: session, UserID: user, Enabled: enabled,
		Created: n, Expires: n.Add(time.Hour), IP: "192.0.2.1",
	}
}

func sessionRows(t *testing.T, s account.Store, session string) bool {
	t.Helper()
	ok, err := s.SessionActive(ctx(t), session)
	must(t, "SessionActive", err)
	return ok
}

func testUsers(t *testing.T, s account.Store) {
	c := ctx(t)
	joined := now().Add(-time.Hour)
	in := account.User{
		ID:            12345, // ignored
		Email:         "  Alice@Example.COM ",
		PasswordHash:  "hash",
		FirstName:     "Alice",
		LastName:      "Liddell",
		Role:          account.RoleStaff,
		IsActive:      true,
		EmailVerified: true,
		DateJoined:    joined,
	}
	id, err := s.CreateUser(c, in)
	must(t, "CreateUser", err)
	if id <= 0 {
		t.Fatalf("CreateUser id = %d", id)
	}

	u, err := s.UserByID(c, id)
	must(t, "UserByID", err)
	want := in
	want.ID = id
	want.Email = "alice@example.com"
	if u.ID != want.ID || u.Email != want.Email || u.PasswordHash != want.PasswordHash ||
		u.FirstName != want.FirstName || u.LastName != want.LastName || u.Role != want.Role ||
		u.IsActive != want.IsActive || u.EmailVerified != want.EmailVerified ||
		!u.DateJoined.Equal(joined) || !u.LastLogin.IsZero() {
		t.Fatalf("UserByID = %+v, want %+v", u, want)
	}

	u2, err := s.UserByEmail(c, "ALICE@example.com ")
	must(t, "UserByEmail", err)
	if u2.ID != id {
		t.Fatalf("UserByEmail id = %d, want %d", u2.ID, id)
	}

	_, err = s.CreateUser(c, account.User{Email: "alice@EXAMPLE.com", DateJoined: now()})
	wantErr(t, "CreateUser with taken address", err, account.ErrConflict)

	_, err = s.UserByID(c, id+1000)
	wantErr(t, "UserByID of missing user", err, account.ErrNotFound)
	_, err = s.UserByEmail(c, "nobody@example.com")
	wantErr(t, "UserByEmail of missing user", err, account.ErrNotFound)

	// An inactive user without password and a last login.
	last := now().Add(-time.Minute)
	id2, err := s.CreateUser(c, account.User{Email: "bob@example.com", LastLogin: last, DateJoined: now()})
	must(t, "CreateUser bob", err)
	if id2 == id {
		t.Fatal("two users got the same id")
	}
	b, err := s.UserByID(c, id2)
	must(t, "UserByID bob", err)
	if b.IsActive || b.EmailVerified || b.PasswordHash != "" || b.Role != account.RoleUser || !b.LastLogin.Equal(last) {
		t.Fatalf("bob = %+v", b)
	}

	list, err := s.ListUsers(c)
	must(t, "ListUsers", err)
	if len(list) != 2 || list[0].ID != id || list[1].ID != id2 || list[1].Email != "bob@example.com" {
		t.Fatalf("ListUsers = %+v", list)
	}

	must(t, "DeleteUser", s.DeleteUser(c, id))
	_, err = s.UserByID(c, id)
	wantErr(t, "UserByID of deleted user", err, account.ErrNotFound)
	wantErr(t, "DeleteUser twice", s.DeleteUser(c, id), account.ErrNotFound)

	// The address is free again.
	id3, err := s.CreateUser(c, account.User{Email: "alice@example.com", DateJoined: now()})
	must(t, "CreateUser with freed address", err)
	if id3 == id {
		t.Fatalf("deleted user's id %d was reused", id)
	}
	list, err = s.ListUsers(c)
	must(t, "ListUsers", err)
	wantInt(t, "len(ListUsers)", len(list), 2)
}

// testUserWrites checks that each single-column write of a user changes
// what it names and leaves every other column, and every other user, as
// they were.
func testUserWrites(t *testing.T, s account.Store) {
	c := ctx(t)
	base := account.User{
		Email: "w@example.com", PasswordHash: "h1", FirstName: "F", LastName: "L",
		Role: 7, IsActive: true, EmailVerified: false,
		DateJoined: now().Add(-48 * time.Hour), LastLogin: now().Add(-time.Hour),
	}
	last := now()
	writes := []struct {
		name  string
		write func(id int64) error
		want  func(u *account.User)
	}{
		{"SetLastLogin", func(id int64) error { return s.SetLastLogin(c, id, last) },
			func(u *account.User) { u.LastLogin = last }},
		{"SetLastLogin zero", func(id int64) error { return s.SetLastLogin(c, id, time.Time{}) },
			func(u *account.User) { u.LastLogin = time.Time{} }},
		{"SetPasswordHash", func(id int64) error { return s.SetPasswordHash(c, id, "h2") },
			func(u *account.User) { u.PasswordHash = "h2" }},
		{"SetPasswordHash empty", func(id int64) error { return s.SetPasswordHash(c, id, "") },
			func(u *account.User) { u.PasswordHash = "" }},
		{"SetNames", func(id int64) error { return s.SetNames(c, id, "G", "M") },
			func(u *account.User) { u.FirstName, u.LastName = "G", "M" }},
		{"SetRole", func(id int64) error { return s.SetRole(c, id, account.RoleStaff) },
			func(u *account.User) { u.Role = account.RoleStaff }},
		{"SetActive false", func(id int64) error { return s.SetActive(c, id, false) },
			func(u *account.User) { u.IsActive = false }},
		{"SetEmailVerified true", func(id int64) error { return s.SetEmailVerified(c, id, true) },
			func(u *account.User) { u.EmailVerified = true }},
	}
	// Each write runs on a user of its own, next to a bystander with the
	// same values.
	for i, w := range writes {
		in := base
		in.Email = fmt.Sprintf("w%d@example.com", i)
		id, err := s.CreateUser(c, in)
		must(t, "CreateUser", err)
		by := base
		by.Email = fmt.Sprintf("bystander%d@example.com", i)
		other, err := s.CreateUser(c, by)
		must(t, "CreateUser bystander", err)

		must(t, w.name, w.write(id))
		want := in
		want.ID = id
		w.want(&want)
		sameUser(t, w.name, s, want)
		by.ID = other
		sameUser(t, w.name+" (bystander)", s, by)

		wantErr(t, w.name+" of missing user", w.write(id+other+1000), account.ErrNotFound)
	}

	// The reverse flips, and writes inside a transaction.
	id := mustUser(t, s, "flip@example.com")
	must(t, "InTx", s.InTx(c, func(tx account.Store) error {
		if err := tx.SetActive(c, id, false); err != nil {
			return err
		}
		if err := tx.SetEmailVerified(c, id, true); err != nil {
			return err
		}
		return tx.SetEmailVerified(c, id, false)
	}))
	must(t, "SetActive true", s.SetActive(c, id, true))
	u, err := s.UserByID(c, id)
	must(t, "UserByID", err)
	if !u.IsActive || u.EmailVerified {
		t.Fatalf("after flips: %+v", u)
	}
}

// sameUser fails unless the stored row of want.ID equals want.
func sameUser(t *testing.T, what string, s account.Store, want account.User) {
	t.Helper()
	u, err := s.UserByID(ctx(t), want.ID)
	must(t, what+": UserByID", err)
	if u.ID != want.ID || u.Email != want.Email || u.PasswordHash != want.PasswordHash ||
		u.FirstName != want.FirstName || u.LastName != want.LastName || u.Role != want.Role ||
		u.IsActive != want.IsActive || u.EmailVerified != want.EmailVerified ||
		!u.DateJoined.Equal(want.DateJoined) || !u.LastLogin.Equal(want.LastLogin) {
		t.Fatalf("%s: stored %+v, want %+v", what, u, want)
	}
}

func testUserForUpdate(t *testing.T, s account.Store) {
	c := ctx(t)
	id := mustUser(t, s, "lock@example.com")
	if _, err := s.UserForUpdate(c, id); err == nil {
		t.Fatal("UserForUpdate outside a transaction succeeded")
	}
	err := s.InTx(c, func(tx account.Store) error {
		u, err := tx.UserForUpdate(c, id)
		if err != nil {
			return err
		}
		if u.ID != id || u.Email != "lock@example.com" || !u.IsActive {
			return fmt.Errorf("UserForUpdate = %+v", u)
		}
		if err := tx.SetRole(c, id, 5); err != nil {
			return err
		}
		// A nested transaction joins the outer one and sees its write.
		return tx.InTx(c, func(tx2 account.Store) error {
			u, err := tx2.UserForUpdate(c, id)
			if err == nil && u.Role != 5 {
				err = fmt.Errorf("own write not seen: role %d", u.Role)
			}
			return err
		})
	})
	must(t, "InTx", err)
	err = s.InTx(c, func(tx account.Store) error {
		_, err := tx.UserForUpdate(c, id+1000)
		return err
	})
	wantErr(t, "UserForUpdate of missing user", err, account.ErrNotFound)
}

// testRaceUserForUpdate runs concurrent read-modify-write transactions
// on one row: with the row locked by UserForUpdate, none is lost.
func testRaceUserForUpdate(t *testing.T, s account.Store) {
	c := ctx(t)
	id := mustUser(t, s, "counter@example.com")
	must(t, "SetNames", s.SetNames(c, id, "First", "Last"))
	_, errs := race(func(int) (struct{}, error) {
		return struct{}{}, s.InTx(c, func(tx account.Store) error {
			u, err := tx.UserForUpdate(c, id)
			if err != nil {
				return err
			}
			return tx.SetRole(c, id, u.Role+1)
		})
	})
	for _, err := range errs {
		must(t, "InTx", err)
	}
	u, err := s.UserByID(c, id)
	must(t, "UserByID", err)
	wantInt(t, "role after concurrent increments", u.Role, racers)
	if u.FirstName != "First" || u.LastName != "Last" || !u.IsActive {
		t.Fatalf("increments changed other columns: %+v", u)
	}
}

// testRaceUserForUpdateTokenBudget is how the MFA limits are kept (see
// countedCheck in caddyauth/account/challenges.go): with the user's row locked, token rows
// another transaction wrote before it let go of the lock are seen, so
// "count, refuse at the limit, else insert" never lets more in.
func testRaceUserForUpdateTokenBudget(t *testing.T, s account.Store) {
	c := ctx(t)
	id := mustUser(t, s, "budget@example.com")
	const limit = 5
	errFull := errors.New("budget spent")
	_, errs := race(func(int) (struct{}, error) {
		return struct{}{}, s.InTx(c, func(tx account.Store) error {
			if _, err := tx.UserForUpdate(c, id); err != nil {
				return err
			}
			n, err := tx.CountTokens(c, "attempt", "budget", time.Time{})
			if err != nil {
				return err
			}
			if n >= limit {
				return errFull
			}
			_, err = tx.CreateToken(c, account.Token{UserID: id, Purpose: "attempt", Token: "budget", Created: now()})
			return err
		})
	})
	full := 0
	for _, err := range errs {
		if errors.Is(err, errFull) {
			full++
			continue
		}
		must(t, "InTx", err)
	}
	n, err := s.CountTokens(c, "attempt", "budget", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "rows written under the lock", n, limit)
	wantInt(t, "refusals", full, racers-limit)
}

func testDeleteUserCascades(t *testing.T, s account.Store) {
	c := ctx(t)
	id := mustUser(t, s, "gone@example.com")
	keep := mustUser(t, s, "kept@example.com")
	for _, uid := range []int64{id, keep} {
		sfx := fmt.Sprint(uid)
		must(t, "InsertRefresh", s.InsertRefresh(c, refresh(uid, "j"+sfx, "s"+sfx, true)))
		_, err := s.CreateToken(c, account.Token{UserID: uid, Purpose: "verify", Token: "t" + sfx, Created: now()})
		must(t, "CreateToken", err)
		_, err = s.CreateAuthenticator(c, account.Authenticator{UserID: uid, Type: "totp", Data: []byte("x"), CreatedAt: now()})
		must(t, "CreateAuthenticator", err)
		must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(c, uid, []string{"h1", "h2"}))
	}

	must(t, "DeleteUser", s.DeleteUser(c, id))

	check := func(uid int64, want bool) {
		t.Helper()
		sfx := fmt.Sprint(uid)
		if got := sessionRows(t, s, "s"+sfx); got != want {
			t.Errorf("user %d: session active = %v, want %v", uid, got, want)
		}
		n, err := s.CountTokens(c, "verify", "t"+sfx, time.Time{})
		must(t, "CountTokens", err)
		a, err := s.Authenticators(c, uid)
		must(t, "Authenticators", err)
		codes, err := s.CountRecoveryCodes(c, uid)
		must(t, "CountRecoveryCodes", err)
		wantN := 0
		if want {
			wantN = 1
		}
		if n != wantN || len(a) != wantN || codes != 2*wantN {
			t.Errorf("user %d: tokens %d, authenticators %d, codes %d; want %d, %d, %d",
				uid, n, len(a), codes, wantN, wantN, 2*wantN)
		}
	}
	check(id, false)
	check(keep, true)
}

func testRefresh(t *testing.T, s account.Store) {
	c := ctx(t)
	u1 := mustUser(t, s, "r1@example.com")
	u2 := mustUser(t, s, "r2@example.com")

	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u1, "a1", "A", true)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u1, "a2", "A", true)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u1, "b1", "B", false)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u2, "c1", "C", false)))
	wantErr(t, "InsertRefresh with taken jti", s.InsertRefresh(c, refresh(u2, "a1", "Z", true)), account.ErrConflict)
	if sessionRows(t, s, "Z") {
		t.Fatal("conflicting InsertRefresh wrote a row")
	}

	for _, sess := range []string{"A", "B", "C"} {
		if !sessionRows(t, s, sess) {
			t.Fatalf("session %s not active", sess)
		}
	}
	if sessionRows(t, s, "nope") {
		t.Fatal("unknown session reported active")
	}

	// A disabled row (written by an earlier version, whose sign-ups held
	// sessions back until the address was confirmed) does not rotate.
	wantErr(t, "RotateRefresh of a disabled row", s.RotateRefresh(c, "c1", refresh(u2, "c2", "C", true)), account.ErrDisabled)

	n, err := s.RevokeSession(c, "A")
	must(t, "RevokeSession", err)
	wantInt(t, "RevokeSession(A)", n, 2)
	if sessionRows(t, s, "A") {
		t.Fatal("revoked session still active")
	}
	n, err = s.RevokeSession(c, "A")
	must(t, "RevokeSession", err)
	wantInt(t, "RevokeSession(A) again", n, 0)

	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u1, "d1", "D", true)))
	n, err = s.RevokeUserSessions(c, u1)
	must(t, "RevokeUserSessions", err)
	wantInt(t, "RevokeUserSessions(u1)", n, 2) // b1 and d1
	if sessionRows(t, s, "B") || sessionRows(t, s, "D") {
		t.Fatal("user's sessions still active")
	}
	if !sessionRows(t, s, "C") {
		t.Fatal("RevokeUserSessions touched another user")
	}

	// PurgeRefresh deletes rows that expired strictly before t.
	base := now()
	for i, exp := range []time.Duration{-2 * time.Hour, -time.Hour, 0, time.Hour} {
		rt := refresh(u2, fmt.Sprintf("p%d", i), fmt.Sprintf("P%d", i), true)
		rt.Created = base.Add(-3 * time.Hour)
		rt.Expires = base.Add(exp)
		must(t, "InsertRefresh", s.InsertRefresh(c, rt))
	}
	n, err = s.PurgeRefresh(c, base)
	must(t, "PurgeRefresh", err)
	wantInt(t, "PurgeRefresh", n, 2)
	for i, want := range []bool{false, false, true, true} {
		if got := sessionRows(t, s, fmt.Sprintf("P%d", i)); got != want {
			t.Errorf("after PurgeRefresh, session P%d active = %v, want %v", i, got, want)
		}
	}
}

func testRotateRefresh(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "rot@example.com")
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "j1", "S", true)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "o1", "Other", true)))

	next := refresh(u, "j2", "S", true)
	next.IP = "2001:db8::1"
	must(t, "RotateRefresh", s.RotateRefresh(c, "j1", next))
	if !sessionRows(t, s, "S") {
		t.Fatal("session lost after rotation")
	}
	// j1 is gone: j2's row is the only one of S (DeleteRefresh by jti).
	n, err := s.DeleteRefresh(c, u, "j1", "")
	must(t, "DeleteRefresh", err)
	wantInt(t, "rows with old jti", n, 0)

	// The new row can be rotated in turn.
	must(t, "RotateRefresh j2", s.RotateRefresh(c, "j2", refresh(u, "j3", "S", true)))

	// Taken next jti: ErrConflict, and the old row stays.
	wantErr(t, "RotateRefresh to taken jti", s.RotateRefresh(c, "j3", refresh(u, "o1", "S", true)), account.ErrConflict)
	must(t, "RotateRefresh j3 after conflict", s.RotateRefresh(c, "j3", refresh(u, "j4", "S", true)))

	// Replay of an old jti changes nothing and says so; its caller then
	// revokes the whole session, and only it.
	wantErr(t, "RotateRefresh replay", s.RotateRefresh(c, "j1", refresh(u, "j5", "S", true)), account.ErrNotFound)
	if !sessionRows(t, s, "S") {
		t.Fatal("a replay's RotateRefresh deleted the session's rows itself")
	}
	_, err = s.RevokeSession(c, "S")
	must(t, "RevokeSession", err)
	if sessionRows(t, s, "S") {
		t.Fatal("RevokeSession after a replay left rows of the session")
	}
	if !sessionRows(t, s, "Other") {
		t.Fatal("replay revoked another session")
	}
	n, err = s.DeleteRefresh(c, u, "j5", "")
	must(t, "DeleteRefresh", err)
	wantInt(t, "rows written by failed rotation", n, 0)

	// Unknown jti for a session without rows: still ErrNotFound.
	wantErr(t, "RotateRefresh forged", s.RotateRefresh(c, "forged", refresh(u, "j6", "Nope", true)), account.ErrNotFound)
	if sessionRows(t, s, "Nope") {
		t.Fatal("failed rotation wrote a row")
	}
}

func testRotateRefreshDisabled(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "dis@example.com")
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "d1", "S", false)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "d0", "S", true)))

	wantErr(t, "RotateRefresh disabled", s.RotateRefresh(c, "d1", refresh(u, "d2", "S", true)), account.ErrDisabled)
	// Nothing changed: d1 and d0 are there, d2 is not.
	n, err := s.DeleteRefresh(c, u, "d2", "")
	must(t, "DeleteRefresh d2", err)
	wantInt(t, "rows of d2", n, 0)
	wantErr(t, "RotateRefresh disabled again", s.RotateRefresh(c, "d1", refresh(u, "d2", "S", true)), account.ErrDisabled)

	n, err = s.RevokeSession(c, "S")
	must(t, "RevokeSession", err)
	wantInt(t, "rows of S (d0, d1)", n, 2)
}

// userRows is UserRefreshTokens at t, failing the test on error.
func userRows(t *testing.T, s account.Store, user int64, at time.Time) []account.RefreshToken {
	t.Helper()
	rows, err := s.UserRefreshTokens(ctx(t), user, at)
	must(t, "UserRefreshTokens", err)
	return rows
}

// A session's start and user agent are kept as written, and every
// rotation carries them to the next row, whatever that row says, while
// the row's own time and address are the rotation's.
func testSessionDetails(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "details@example.com")
	started := now().Add(-time.Hour)
	first := refresh(u, "j1", "S", true)
	first.Created, first.Started = started, started
	first.UserAgent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0 — ünïcode"
	must(t, "InsertRefresh", s.InsertRefresh(c, first))
	rows := userRows(t, s, u, now())
	if len(rows) != 1 || !rows[0].Started.Equal(started) || rows[0].UserAgent != first.UserAgent || !rows[0].Created.Equal(started) || rows[0].IP != first.IP {
		t.Fatalf("inserted row read back as %+v, want %+v", rows, first)
	}

	for i, jti := range []string{"j2", "j3"} {
		next := refresh(u, jti, "S", true)
		next.Created = started.Add(time.Duration(i+1) * time.Minute)
		next.IP = fmt.Sprintf("2001:db8::%d", i+1)
		next.Started = now() // ignored: the session started when it started
		next.UserAgent = "curl/8.5.0"
		must(t, "RotateRefresh to "+jti, s.RotateRefresh(c, []string{"j1", "j2"}[i], next))
		rows = userRows(t, s, u, now())
		if len(rows) != 1 {
			t.Fatalf("after rotating to %s: %d rows, want 1", jti, len(rows))
		}
		got := rows[0]
		if got.JTI != jti || !got.Started.Equal(started) || got.UserAgent != first.UserAgent {
			t.Fatalf("after rotating to %s: %+v, want the start %v and the user agent %q carried", jti, got, started, first.UserAgent)
		}
		if !got.Created.Equal(next.Created) || got.IP != next.IP || !got.Expires.Equal(next.Expires) {
			t.Fatalf("after rotating to %s: %+v, want the rotation's time, address and expiry", jti, got)
		}
	}

	// A disabled row does not rotate, and keeps what it has.
	held := refresh(u, "h1", "H", false)
	held.Started, held.UserAgent = started, "held"
	must(t, "InsertRefresh", s.InsertRefresh(c, held))
	wantErr(t, "RotateRefresh of a disabled row", s.RotateRefresh(c, "h1", refresh(u, "h2", "H", true)), account.ErrDisabled)

	// Without a start or a user agent (a row an earlier version wrote):
	// the zero time and "".
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "b1", "B", true)))
	must(t, "RotateRefresh b1", s.RotateRefresh(c, "b1", refresh(u, "b2", "B", true)))
	for _, rt := range userRows(t, s, u, now()) {
		switch rt.Session {
		case "B":
			if !rt.Started.IsZero() || rt.UserAgent != "" {
				t.Fatalf("a row without details read back as %+v", rt)
			}
		case "H":
			if rt.JTI != "h1" || !rt.Started.Equal(started) || rt.UserAgent != "held" {
				t.Fatalf("the disabled row read back as %+v", rt)
			}
		}
	}
}

// UserRefreshTokens lists one user's rows that have not expired, newest
// first.
func testUserRefreshTokens(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "rows@example.com")
	v := mustUser(t, s, "rows2@example.com")
	base := now()
	for i, spec := range []struct {
		user    int64
		jti     string
		created time.Duration
		expires time.Duration
	}{
		{u, "old", -3 * time.Hour, time.Hour},
		{u, "new", -time.Hour, time.Hour},
		{u, "edge", -2 * time.Hour, 0}, // expires exactly at base: still listed
		{u, "expired", -30 * time.Minute, -time.Microsecond},
		{v, "other", 0, time.Hour},
	} {
		rt := refresh(spec.user, spec.jti, fmt.Sprintf("S%d", i), true)
		rt.Created, rt.Expires = base.Add(spec.created), base.Add(spec.expires)
		must(t, "InsertRefresh", s.InsertRefresh(c, rt))
	}
	var got []string
	for _, rt := range userRows(t, s, u, base) {
		if rt.UserID != u {
			t.Fatalf("another user's row: %+v", rt)
		}
		got = append(got, rt.JTI)
	}
	if want := []string{"new", "edge", "old"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("UserRefreshTokens = %q, want %q", got, want)
	}
	if rows := userRows(t, s, mustUser(t, s, "rows3@example.com"), base); len(rows) != 0 {
		t.Fatalf("a user without sessions: %+v", rows)
	}
}

func testDeleteRefresh(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "del@example.com")
	v := mustUser(t, s, "del2@example.com")
	for _, rt := range []account.RefreshToken{
		refresh(u, "a1", "A", true), refresh(u, "a2", "A", true),
		refresh(u, "b1", "B", true), refresh(u, "c1", "C", true),
		refresh(v, "v1", "V", true),
	} {
		must(t, "InsertRefresh", s.InsertRefresh(c, rt))
	}

	n, err := s.DeleteRefresh(c, v, "a1", "A")
	must(t, "DeleteRefresh as other user", err)
	wantInt(t, "DeleteRefresh of another user's rows", n, 0)

	n, err = s.DeleteRefresh(c, u, "b1", "A")
	must(t, "DeleteRefresh", err)
	wantInt(t, "DeleteRefresh(b1 or A)", n, 3)
	if sessionRows(t, s, "A") || sessionRows(t, s, "B") {
		t.Fatal("DeleteRefresh left rows")
	}
	n, err = s.DeleteRefresh(c, u, "", "")
	must(t, "DeleteRefresh empty", err)
	wantInt(t, "DeleteRefresh with empty jti and session", n, 0)
	n, err = s.DeleteRefresh(c, u, "", "C")
	must(t, "DeleteRefresh by session", err)
	wantInt(t, "DeleteRefresh(session C)", n, 1)
	if !sessionRows(t, s, "V") {
		t.Fatal("other user's session deleted")
	}
}

func testTokens(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "tok@example.com")
	base := now()

	ids := map[int64]bool{}
	for i, tk := range []account.Token{
		{ID: 999, UserID: u, Purpose: "p", Token: "x", Created: base.Add(-3 * time.Minute)},
		{UserID: u, Purpose: "p", Token: "y", Created: base.Add(-time.Minute)},
		{UserID: u, Purpose: "p", Token: "z", Created: base.Add(-2 * time.Minute)},
		{UserID: u, Purpose: "q", Token: "x", Created: base},
		{UserID: 0, Purpose: "fail", Token: "192.0.2.1", Created: base.Add(-time.Hour)},
		{UserID: 0, Purpose: "fail", Token: "192.0.2.1", Created: base},
		{UserID: 0, Purpose: "fail", Token: "192.0.2.1", Created: base},
	} {
		id, err := s.CreateToken(c, tk)
		must(t, fmt.Sprintf("CreateToken %d", i), err)
		if id <= 0 || ids[id] {
			t.Fatalf("CreateToken %d: id %d not new", i, id)
		}
		ids[id] = true
	}

	list, err := s.UserTokens(c, u, "p", base.Add(-2*time.Minute))
	must(t, "UserTokens", err)
	if len(list) != 2 || list[0].Token != "z" || list[1].Token != "y" {
		t.Fatalf("UserTokens = %+v, want z then y", list)
	}
	if list[0].UserID != u || list[0].Purpose != "p" || !list[0].Created.Equal(base.Add(-2*time.Minute)) || list[0].ID <= 0 {
		t.Fatalf("UserTokens[0] = %+v", list[0])
	}
	list, err = s.UserTokens(c, u, "p", time.Time{})
	must(t, "UserTokens", err)
	if len(list) != 3 || list[0].Token != "x" {
		t.Fatalf("UserTokens(all) = %+v", list)
	}
	list, err = s.UserTokens(c, u, "none", time.Time{})
	must(t, "UserTokens", err)
	wantInt(t, "UserTokens of unknown purpose", len(list), 0)

	n, err := s.CountTokens(c, "fail", "192.0.2.1", base.Add(-time.Minute))
	must(t, "CountTokens", err)
	wantInt(t, "CountTokens (recent)", n, 2)
	n, err = s.CountTokens(c, "fail", "192.0.2.1", base) // created == notBefore counts
	must(t, "CountTokens", err)
	wantInt(t, "CountTokens (at notBefore)", n, 2)
	n, err = s.CountTokens(c, "fail", "192.0.2.1", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "CountTokens (all)", n, 3)
	n, err = s.CountTokens(c, "p", "192.0.2.1", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "CountTokens (other purpose)", n, 0)

	tk, err := s.ConsumeToken(c, "fail", "192.0.2.1", base.Add(-2*time.Hour))
	must(t, "ConsumeToken of user-less rows", err)
	if tk.UserID != 0 || tk.Purpose != "fail" {
		t.Fatalf("ConsumeToken = %+v", tk)
	}
}

// testCreateTokenWhile: the row is inserted while its condition's row
// is there and young enough, and not at all otherwise.
func testCreateTokenWhile(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "while@example.com")
	base := now()
	mustTokens(t, s,
		account.Token{UserID: u, Purpose: "challenge", Token: "live", Created: base},
		account.Token{UserID: u, Purpose: "challenge", Token: "old", Created: base.Add(-time.Hour)})
	for _, tc := range []struct {
		name, purpose, token string
		notBefore            time.Time
		want                 error
	}{
		{"live", "challenge", "live", base, nil},
		{"too old", "challenge", "old", base.Add(-time.Minute), account.ErrNotFound},
		{"other purpose", "reset", "live", time.Time{}, account.ErrNotFound},
		{"missing", "challenge", "missing", time.Time{}, account.ErrNotFound},
	} {
		row := account.Token{UserID: u, Purpose: "attempt", Token: tc.name, Created: base}
		id, err := s.CreateTokenWhile(c, row, tc.purpose, tc.token, tc.notBefore)
		wantErr(t, "CreateTokenWhile "+tc.name, err, tc.want)
		n, err := s.CountTokens(c, "attempt", tc.name, time.Time{})
		must(t, "CountTokens", err)
		if tc.want != nil {
			wantInt(t, "rows after a refused "+tc.name, n, 0)
			continue
		}
		wantInt(t, "rows after "+tc.name, n, 1)
		got, err := s.FindToken(c, "attempt", tc.name, time.Time{})
		must(t, "FindToken", err)
		if got.ID != id || got.UserID != u || !got.Created.Equal(base) {
			t.Fatalf("row inserted = %+v, id %d", got, id)
		}
	}
}

func testFindToken(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "find@example.com")
	base := now()
	id, err := s.CreateToken(c, account.Token{UserID: u, Purpose: "reset", Token: "fresh", Created: base})
	must(t, "CreateToken", err)
	_, err = s.CreateToken(c, account.Token{UserID: u, Purpose: "reset", Token: "stale", Created: base.Add(-2 * time.Hour)})
	must(t, "CreateToken", err)

	for i := 0; i < 2; i++ { // finding does not consume
		tk, err := s.FindToken(c, "reset", "fresh", base)
		must(t, "FindToken", err)
		if tk.ID != id || tk.UserID != u || tk.Purpose != "reset" || tk.Token != "fresh" || !tk.Created.Equal(base) {
			t.Fatalf("FindToken = %+v", tk)
		}
	}
	_, err = s.FindToken(c, "verify", "fresh", time.Time{})
	wantErr(t, "FindToken with other purpose", err, account.ErrNotFound)

	_, err = s.FindToken(c, "reset", "stale", base.Add(-time.Hour))
	wantErr(t, "FindToken of expired row", err, account.ErrNotFound)
	n, err := s.CountTokens(c, "reset", "stale", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "expired rows left after FindToken", n, 0)
	n, err = s.CountTokens(c, "reset", "fresh", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "fresh rows left after FindToken", n, 1)
}

func testConsumeToken(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "consume@example.com")
	base := now()
	id, err := s.CreateToken(c, account.Token{UserID: u, Purpose: "login", Token: "t1", Created: base})
	must(t, "CreateToken", err)
	mustTokens(t, s,
		account.Token{UserID: u, Purpose: "login", Token: "old", Created: base.Add(-time.Hour)},
		account.Token{UserID: u, Purpose: "other", Token: "t1", Created: base})

	_, err = s.ConsumeToken(c, "login", "t1", base.Add(time.Microsecond))
	wantErr(t, "ConsumeToken created before notBefore", err, account.ErrNotFound)

	tk, err := s.ConsumeToken(c, "login", "t1", base) // created == notBefore is fresh
	must(t, "ConsumeToken", err)
	if tk.ID != id || tk.UserID != u || tk.Purpose != "login" || tk.Token != "t1" || !tk.Created.Equal(base) {
		t.Fatalf("ConsumeToken = %+v", tk)
	}
	_, err = s.ConsumeToken(c, "login", "t1", time.Time{})
	wantErr(t, "ConsumeToken twice", err, account.ErrNotFound)
	_, err = s.FindToken(c, "login", "t1", time.Time{})
	wantErr(t, "FindToken of consumed token", err, account.ErrNotFound)

	_, err = s.ConsumeToken(c, "login", "old", base.Add(-time.Minute))
	wantErr(t, "ConsumeToken of expired token", err, account.ErrNotFound)
	_, err = s.ConsumeToken(c, "login", "nope", time.Time{})
	wantErr(t, "ConsumeToken of unknown token", err, account.ErrNotFound)

	n, err := s.CountTokens(c, "other", "t1", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "same token of another purpose", n, 1)
}

func testReplaceToken(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "repl@example.com")
	v := mustUser(t, s, "repl2@example.com")
	base := now()
	for _, tk := range []account.Token{
		{UserID: u, Purpose: "pending", Token: "a", Created: base},
		{UserID: u, Purpose: "pending", Token: "b", Created: base},
		{UserID: u, Purpose: "keep", Token: "c", Created: base},
		{UserID: v, Purpose: "pending", Token: "d", Created: base},
	} {
		_, err := s.CreateToken(c, tk)
		must(t, "CreateToken", err)
	}
	id, err := s.ReplaceToken(c, account.Token{UserID: u, Purpose: "pending", Token: "new", Created: base})
	must(t, "ReplaceToken", err)
	list, err := s.UserTokens(c, u, "pending", time.Time{})
	must(t, "UserTokens", err)
	if len(list) != 1 || list[0].ID != id || list[0].Token != "new" {
		t.Fatalf("after ReplaceToken: %+v", list)
	}
	for _, w := range []struct {
		user    int64
		purpose string
	}{{u, "keep"}, {v, "pending"}} {
		list, err = s.UserTokens(c, w.user, w.purpose, time.Time{})
		must(t, "UserTokens", err)
		wantInt(t, fmt.Sprintf("rows of user %d purpose %s", w.user, w.purpose), len(list), 1)
	}
}

func testDeleteTokens(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "dt@example.com")
	v := mustUser(t, s, "dt2@example.com")
	base := now()
	create := func(user int64, purpose, token string, created time.Time) {
		t.Helper()
		_, err := s.CreateToken(c, account.Token{UserID: user, Purpose: purpose, Token: token, Created: created})
		must(t, "CreateToken", err)
	}
	create(u, "a", "1", base)
	create(u, "a", "2", base)
	create(u, "b", "3", base)
	create(u, "c", "4", base)
	create(v, "a", "5", base)

	n, err := s.DeleteUserTokens(c, u, "a", "b")
	must(t, "DeleteUserTokens", err)
	wantInt(t, "DeleteUserTokens(a, b)", n, 3)
	n, err = s.DeleteUserTokens(c, u)
	must(t, "DeleteUserTokens", err)
	wantInt(t, "DeleteUserTokens(all)", n, 1)
	n, err = s.CountTokens(c, "a", "5", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "other user's token", n, 1)

	create(u, "x", "dup", base)
	create(v, "x", "dup", base)
	create(u, "y", "dup", base)
	n, err = s.DeleteToken(c, "x", "dup")
	must(t, "DeleteToken", err)
	wantInt(t, "DeleteToken", n, 2)
	n, err = s.DeleteToken(c, "x", "dup")
	must(t, "DeleteToken", err)
	wantInt(t, "DeleteToken again", n, 0)
	n, err = s.CountTokens(c, "y", "dup", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "token of other purpose", n, 1)

	create(0, "fail", "k", base.Add(-2*time.Hour))
	create(u, "fail", "k", base.Add(-time.Hour))
	create(u, "fail", "k", base)
	create(u, "keep", "k", base.Add(-2*time.Hour))
	n, err = s.PurgeTokens(c, "fail", base.Add(-time.Hour))
	must(t, "PurgeTokens", err)
	wantInt(t, "PurgeTokens", n, 1) // created == t is kept
	n, err = s.CountTokens(c, "fail", "k", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "rows left after PurgeTokens", n, 2)
	n, err = s.CountTokens(c, "keep", "k", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "other purpose after PurgeTokens", n, 1)

	// NewestTokens: the user's rows of the purpose inside the window,
	// newest first; equal times in insertion order.
	for i, ago := range []time.Duration{3 * time.Hour, 40 * time.Minute, 30 * time.Minute, 30 * time.Minute, 10 * time.Minute} {
		create(u, "attempt", fmt.Sprint(i), base.Add(-ago))
	}
	create(v, "attempt", "other user", base)
	create(u, "other purpose", "x", base)
	window := base.Add(-time.Hour)
	inWindow := []time.Time{base.Add(-10 * time.Minute), base.Add(-30 * time.Minute), base.Add(-30 * time.Minute), base.Add(-40 * time.Minute)}
	for n := 1; n <= 5; n++ {
		got, err := s.NewestTokens(c, u, "attempt", window, n)
		must(t, "NewestTokens", err)
		want := inWindow[:min(n, len(inWindow))] // the fifth row is outside the window
		if !slices.EqualFunc(got, want, time.Time.Equal) {
			t.Errorf("NewestTokens(n=%d) = %v, want %v", n, got, want)
		}
	}
}

func testAuthenticators(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "mfa@example.com")
	created := now().Add(-time.Minute)
	secret := []byte{0, 1, 2, 0xff, 0}
	id, err := s.CreateAuthenticator(c, account.Authenticator{ID: 77, UserID: u, Type: "totp", Data: secret, CreatedAt: created})
	must(t, "CreateAuthenticator", err)
	_, err = s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "totp", Data: []byte("other"), CreatedAt: created})
	wantErr(t, "second TOTP authenticator", err, account.ErrConflict)
	id2, err := s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "recovery_codes", CreatedAt: created})
	must(t, "CreateAuthenticator recovery_codes", err)

	list, err := s.Authenticators(c, u)
	must(t, "Authenticators", err)
	if len(list) != 2 {
		t.Fatalf("Authenticators = %+v", list)
	}
	a := list[0]
	if a.ID != id || a.UserID != u || a.Type != "totp" || !bytes.Equal(a.Data, secret) ||
		a.LastStep != 0 || !a.CreatedAt.Equal(created) || !a.LastUsedAt.IsZero() {
		t.Fatalf("Authenticators[0] = %+v", a)
	}
	if list[1].ID != id2 || list[1].Type != "recovery_codes" || len(list[1].Data) != 0 {
		t.Fatalf("Authenticators[1] = %+v", list[1])
	}
	other := mustUser(t, s, "nomfa@example.com")
	list, err = s.Authenticators(c, other)
	must(t, "Authenticators", err)
	wantInt(t, "authenticators of user without any", len(list), 0)
}

func testAdvanceTOTPStep(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "totp@example.com")
	_, err := s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "totp", Data: []byte("s"), CreatedAt: now()})
	must(t, "CreateAuthenticator", err)
	// Another factor type must not be advanced.
	_, err = s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "recovery_codes", CreatedAt: now()})
	must(t, "CreateAuthenticator", err)

	t1 := now()
	for _, step := range []struct {
		step int64
		want bool
	}{{100, true}, {100, false}, {99, false}, {101, true}, {0, false}} {
		ok, err := s.AdvanceTOTPStep(c, u, step.step, t1)
		must(t, "AdvanceTOTPStep", err)
		if ok != step.want {
			t.Fatalf("AdvanceTOTPStep(%d) = %v, want %v", step.step, ok, step.want)
		}
	}
	list, err := s.Authenticators(c, u)
	must(t, "Authenticators", err)
	for _, a := range list {
		switch a.Type {
		case "totp":
			if a.LastStep != 101 || !a.LastUsedAt.Equal(t1) {
				t.Fatalf("totp after AdvanceTOTPStep: %+v", a)
			}
		default:
			if a.LastStep != 0 || !a.LastUsedAt.IsZero() {
				t.Fatalf("%s changed by AdvanceTOTPStep: %+v", a.Type, a)
			}
		}
	}

	v := mustUser(t, s, "nototp@example.com")
	ok, err := s.AdvanceTOTPStep(c, v, 5, now())
	must(t, "AdvanceTOTPStep without TOTP", err)
	if ok {
		t.Fatal("AdvanceTOTPStep succeeded for a user without TOTP")
	}
}

func testRecoveryCodes(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "rc@example.com")
	v := mustUser(t, s, "rc2@example.com")
	_, err := s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "recovery_codes", CreatedAt: now()})
	must(t, "CreateAuthenticator", err)

	must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(c, u, []string{"h1", "h2", "h3"}))
	must(t, "ReplaceRecoveryCodes other", s.ReplaceRecoveryCodes(c, v, []string{"h1"}))
	n, err := s.CountRecoveryCodes(c, u)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "CountRecoveryCodes", n, 3)

	used := now()
	ok, err := s.ConsumeRecoveryCode(c, u, "h2", used)
	must(t, "ConsumeRecoveryCode", err)
	if !ok {
		t.Fatal("ConsumeRecoveryCode of a valid code = false")
	}
	ok, err = s.ConsumeRecoveryCode(c, u, "h2", used)
	must(t, "ConsumeRecoveryCode", err)
	if ok {
		t.Fatal("ConsumeRecoveryCode of a used code = true")
	}
	ok, err = s.ConsumeRecoveryCode(c, u, "zzz", used)
	must(t, "ConsumeRecoveryCode", err)
	if ok {
		t.Fatal("ConsumeRecoveryCode of an unknown code = true")
	}
	n, err = s.CountRecoveryCodes(c, u)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "CountRecoveryCodes after use", n, 2)
	list, err := s.Authenticators(c, u)
	must(t, "Authenticators", err)
	if len(list) != 1 || !list[0].LastUsedAt.Equal(used) {
		t.Fatalf("recovery_codes authenticator after use: %+v", list)
	}

	// Codes are per user.
	ok, err = s.ConsumeRecoveryCode(c, u, "h1", used)
	must(t, "ConsumeRecoveryCode", err)
	if !ok {
		t.Fatal("ConsumeRecoveryCode h1 = false")
	}
	n, err = s.CountRecoveryCodes(c, v)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "other user's codes", n, 1)

	// Replacing drops the old codes.
	must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(c, u, []string{"n1", "n2", "n2"}))
	n, err = s.CountRecoveryCodes(c, u)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "CountRecoveryCodes after replace (duplicates stored once)", n, 2)
	ok, err = s.ConsumeRecoveryCode(c, u, "h3", used)
	must(t, "ConsumeRecoveryCode", err)
	if ok {
		t.Fatal("old code still valid after ReplaceRecoveryCodes")
	}
	must(t, "ReplaceRecoveryCodes empty", s.ReplaceRecoveryCodes(c, u, nil))
	n, err = s.CountRecoveryCodes(c, u)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "CountRecoveryCodes after clearing", n, 0)
}

func testDeleteAuthenticators(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "da@example.com")
	v := mustUser(t, s, "da2@example.com")
	setup := func(user int64) {
		t.Helper()
		for _, typ := range []string{"totp", "recovery_codes"} {
			_, err := s.CreateAuthenticator(c, account.Authenticator{UserID: user, Type: typ, CreatedAt: now()})
			must(t, "CreateAuthenticator", err)
		}
		must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(c, user, []string{"a", "b"}))
	}
	setup(u)
	setup(v)
	codes := func(user int64) int {
		t.Helper()
		n, err := s.CountRecoveryCodes(c, user)
		must(t, "CountRecoveryCodes", err)
		return n
	}

	n, err := s.DeleteAuthenticators(c, u, "totp")
	must(t, "DeleteAuthenticators(totp)", err)
	wantInt(t, "DeleteAuthenticators(totp)", n, 1)
	wantInt(t, "codes after deleting TOTP", codes(u), 2)

	n, err = s.DeleteAuthenticators(c, u, "recovery_codes")
	must(t, "DeleteAuthenticators(recovery_codes)", err)
	wantInt(t, "DeleteAuthenticators(recovery_codes)", n, 1)
	wantInt(t, "codes after deleting recovery_codes", codes(u), 0)
	list, err := s.Authenticators(c, u)
	must(t, "Authenticators", err)
	wantInt(t, "authenticators left", len(list), 0)

	n, err = s.DeleteAuthenticators(c, u)
	must(t, "DeleteAuthenticators(none left)", err)
	wantInt(t, "DeleteAuthenticators with nothing left", n, 0)

	// v is untouched so far; deleting all of v's removes the codes too.
	wantInt(t, "other user's codes", codes(v), 2)
	n, err = s.DeleteAuthenticators(c, v)
	must(t, "DeleteAuthenticators(all)", err)
	wantInt(t, "DeleteAuthenticators(all)", n, 2)
	wantInt(t, "codes after deleting all", codes(v), 0)

	// A new TOTP factor can be enrolled once the old one is gone.
	_, err = s.CreateAuthenticator(c, account.Authenticator{UserID: v, Type: "totp", CreatedAt: now()})
	must(t, "CreateAuthenticator after delete", err)
}

func testSocialAccounts(t *testing.T, s account.Store) {
	c := ctx(t)
	ada := mustUser(t, s, "ada@example.com")
	bob := mustUser(t, s, "bob@example.com")
	_, err := s.SocialAccountByUID(c, "google", "g-1")
	wantErr(t, "SocialAccountByUID of nothing", err, account.ErrNotFound)
	at := now()
	id, err := s.CreateSocialAccount(c, account.SocialAccount{UserID: ada, Provider: "google", UID: "g-1", Created: at})
	must(t, "CreateSocialAccount", err)
	_, err = s.CreateSocialAccount(c, account.SocialAccount{UserID: bob, Provider: "google", UID: "g-1", Created: at})
	wantErr(t, "a subject linked twice", err, account.ErrConflict)
	// The same subject at another provider is another identity.
	other, err := s.CreateSocialAccount(c, account.SocialAccount{UserID: bob, Provider: "company", UID: "g-1", Created: at})
	must(t, "CreateSocialAccount at another provider", err)
	got, err := s.SocialAccountByUID(c, "google", "g-1")
	must(t, "SocialAccountByUID", err)
	if got != (account.SocialAccount{ID: id, UserID: ada, Provider: "google", UID: "g-1", Created: at}) {
		t.Fatalf("link %+v", got)
	}
	_, err = s.SocialAccountByUID(c, "google", "G-1")
	wantErr(t, "subjects compare exactly", err, account.ErrNotFound)

	used := at.Add(time.Minute)
	must(t, "SetSocialLogin", s.SetSocialLogin(c, id, used))
	wantErr(t, "SetSocialLogin of nothing", s.SetSocialLogin(c, id+other+100, used), account.ErrNotFound)
	if got, _ := s.SocialAccountByUID(c, "google", "g-1"); !got.LastLogin.Equal(used) || got.UserID != ada {
		t.Fatalf("after SetSocialLogin: %+v", got)
	}
	second, err := s.CreateSocialAccount(c, account.SocialAccount{UserID: ada, Provider: "company", UID: "c-9", Created: at})
	must(t, "CreateSocialAccount", err)
	list, err := s.SocialAccounts(c, ada)
	must(t, "SocialAccounts", err)
	if len(list) != 2 || list[0].ID != id || list[1].ID != second {
		t.Fatalf("ada's links %+v", list)
	}
	ok, err := s.DeleteSocialAccount(c, bob, id)
	must(t, "DeleteSocialAccount of another's link", err)
	if ok {
		t.Fatal("a user deleted another user's link")
	}
	ok, err = s.DeleteSocialAccount(c, ada, id)
	must(t, "DeleteSocialAccount", err)
	if !ok {
		t.Fatal("the user's own link was not deleted")
	}
	// A freed subject may be linked again.
	_, err = s.CreateSocialAccount(c, account.SocialAccount{UserID: bob, Provider: "google", UID: "g-1", Created: at})
	must(t, "CreateSocialAccount of a freed subject", err)
	// Deleting the user deletes its links.
	must(t, "DeleteUser", s.DeleteUser(c, ada))
	_, err = s.SocialAccountByUID(c, "company", "c-9")
	wantErr(t, "a deleted user's link", err, account.ErrNotFound)
	if list, _ := s.SocialAccounts(c, bob); len(list) != 2 {
		t.Fatalf("bob's links after ada's deletion: %+v", list)
	}
}

// Many first logins of one provider subject at once link it once.
func testRaceCreateSocialAccount(t *testing.T, s account.Store) {
	c := ctx(t)
	users := make([]int64, racers)
	for i := range users {
		users[i] = mustUser(t, s, fmt.Sprintf("racer%d@example.com", i))
	}
	_, errs := race(func(i int) (int64, error) {
		return s.CreateSocialAccount(c, account.SocialAccount{UserID: users[i], Provider: "google", UID: "contested", Created: now()})
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, account.ErrConflict):
			t.Errorf("CreateSocialAccount: %v", err)
		}
	}
	wantInt(t, "links of one subject", wins, 1)
}

func testPasskeys(t *testing.T, s account.Store) {
	c := ctx(t)
	ada := mustUser(t, s, "ada@example.com")
	bob := mustUser(t, s, "bob@example.com")
	_, err := s.PasskeyByCredentialID(c, []byte{1, 2, 3})
	wantErr(t, "PasskeyByCredentialID of nothing", err, account.ErrNotFound)
	at := now()
	pk := account.Passkey{UserID: ada, CredentialID: []byte{0, 1, 2, 250}, PublicKey: []byte("cose key"), SignCount: 7,
		Name: "Laptop", AAGUID: []byte{9, 9}, Transports: []string{"internal", "hybrid"}, UserVerified: true,
		BackupEligible: true, BackupState: true, Created: at}
	id, err := s.CreatePasskey(c, pk)
	must(t, "CreatePasskey", err)
	pk.ID = id
	_, err = s.CreatePasskey(c, account.Passkey{UserID: bob, CredentialID: pk.CredentialID, PublicKey: []byte("k"), Name: "x", Created: at})
	wantErr(t, "a credential id registered twice", err, account.ErrConflict)
	got, err := s.PasskeyByCredentialID(c, pk.CredentialID)
	must(t, "PasskeyByCredentialID", err)
	if !reflect.DeepEqual(got, pk) {
		t.Fatalf("passkey %+v, want %+v", got, pk)
	}
	second, err := s.CreatePasskey(c, account.Passkey{UserID: ada, CredentialID: []byte("second"), PublicKey: []byte("k2"), Name: "Phone", Created: at})
	must(t, "CreatePasskey", err)
	if list, _ := s.Passkeys(c, ada); len(list) != 2 || list[0].ID != id || list[1].ID != second || list[1].Transports != nil || len(list[1].AAGUID) != 0 {
		t.Fatalf("ada's passkeys %+v", list)
	}

	ok, err := s.RenamePasskey(c, bob, id, "Mine now")
	must(t, "RenamePasskey of another's", err)
	if ok {
		t.Fatal("a user renamed another user's passkey")
	}
	ok, err = s.RenamePasskey(c, ada, id, "Work laptop")
	must(t, "RenamePasskey", err)
	if got, _ := s.PasskeyByCredentialID(c, pk.CredentialID); !ok || got.Name != "Work laptop" || got.SignCount != 7 {
		t.Fatalf("after RenamePasskey: %v %+v", ok, got)
	}

	used := at.Add(time.Minute)
	ok, err = s.UsePasskey(c, id, 6, 8, used)
	must(t, "UsePasskey with a stale counter", err)
	if ok {
		t.Fatal("UsePasskey moved a counter it did not hold")
	}
	ok, err = s.UsePasskey(c, id, 7, 8, used)
	must(t, "UsePasskey", err)
	if got, _ := s.PasskeyByCredentialID(c, pk.CredentialID); !ok || got.SignCount != 8 || !got.LastUsed.Equal(used) || got.Name != "Work laptop" {
		t.Fatalf("after UsePasskey: %v %+v", ok, got)
	}
	must(t, "LockPasskey", s.LockPasskey(c, id))
	wantErr(t, "LockPasskey of nothing", s.LockPasskey(c, id+second+100), account.ErrNotFound)
	ok, err = s.UsePasskey(c, id, 8, 9, used)
	must(t, "UsePasskey of a locked passkey", err)
	if got, _ := s.PasskeyByCredentialID(c, pk.CredentialID); ok || !got.Locked || got.SignCount != 8 {
		t.Fatalf("a locked passkey was used: %v %+v", ok, got)
	}

	n, err := s.DeletePasskeys(c, bob, id)
	must(t, "DeletePasskeys of another's", err)
	wantInt(t, "another user's passkeys deleted", n, 0)
	n, err = s.DeletePasskeys(c, ada, second)
	must(t, "DeletePasskeys", err)
	wantInt(t, "passkeys deleted", n, 1)
	_, err = s.CreatePasskey(c, account.Passkey{UserID: ada, CredentialID: []byte("third"), PublicKey: []byte("k3"), Name: "Key", Created: at})
	must(t, "CreatePasskey", err)
	n, err = s.DeletePasskeys(c, ada)
	must(t, "DeletePasskeys of all", err)
	wantInt(t, "all of ada's passkeys deleted", n, 2)
	_, err = s.CreatePasskey(c, account.Passkey{UserID: bob, CredentialID: []byte("bob's"), PublicKey: []byte("k"), Name: "Key", Created: at})
	must(t, "CreatePasskey", err)
	must(t, "DeleteUser", s.DeleteUser(c, bob))
	_, err = s.PasskeyByCredentialID(c, []byte("bob's"))
	wantErr(t, "a deleted user's passkey", err, account.ErrNotFound)
}

// Many uses of one passkey with one counter value: exactly one moves it.
func testRaceUsePasskey(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "racer@example.com")
	id, err := s.CreatePasskey(c, account.Passkey{UserID: u, CredentialID: []byte("contested"), PublicKey: []byte("k"), SignCount: 1, Name: "Key", Created: now()})
	must(t, "CreatePasskey", err)
	oks, errs := race(func(i int) (bool, error) { return s.UsePasskey(c, id, 1, 2, now()) })
	wins := 0
	for i, err := range errs {
		must(t, "UsePasskey", err)
		if oks[i] {
			wins++
		}
	}
	wantInt(t, "uses of one counter value", wins, 1)
}

func testSettings(t *testing.T, s account.Store) {
	c := ctx(t)
	got, err := s.LoadOrStoreSetting(c, "signing_key", []byte("first"))
	must(t, "LoadOrStoreSetting", err)
	if string(got) != "first" {
		t.Fatalf("LoadOrStoreSetting = %q, want first", got)
	}
	got, err = s.LoadOrStoreSetting(c, "signing_key", []byte("second"))
	must(t, "LoadOrStoreSetting", err)
	if string(got) != "first" {
		t.Fatalf("LoadOrStoreSetting overwrote: %q", got)
	}
	bin := []byte{0, 0xfe, 0, 1}
	got, err = s.LoadOrStoreSetting(c, "other", bin)
	must(t, "LoadOrStoreSetting", err)
	if !bytes.Equal(got, bin) {
		t.Fatalf("LoadOrStoreSetting(other) = %x, want %x", got, bin)
	}
	got, err = s.Setting(c, "other")
	must(t, "Setting", err)
	if !bytes.Equal(got, bin) {
		t.Fatalf("Setting(other) = %x, want %x", got, bin)
	}
	must(t, "DeleteSetting", s.DeleteSetting(c, "other"))
	if _, err := s.Setting(c, "other"); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("Setting after DeleteSetting: %v, want ErrNotFound", err)
	}
	must(t, "DeleteSetting of a missing name", s.DeleteSetting(c, "other"))
	if got, err := s.Setting(c, "signing_key"); err != nil || string(got) != "first" {
		t.Fatalf("DeleteSetting(other) touched signing_key: %q, %v", got, err)
	}
}

// testResealTOTP: every user's TOTP authenticator is listed, and its data
// changes only while it still holds the value the caller read.
func testResealTOTP(t *testing.T, s account.Store) {
	c := ctx(t)
	u, v := mustUser(t, s, "reseal-u@example.com"), mustUser(t, s, "reseal-v@example.com")
	idU, err := s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "totp", Data: []byte("old-u"), LastStep: 7, CreatedAt: now()})
	must(t, "CreateAuthenticator", err)
	_, err = s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "recovery_codes", CreatedAt: now()})
	must(t, "CreateAuthenticator recovery_codes", err)
	idV, err := s.CreateAuthenticator(c, account.Authenticator{UserID: v, Type: "totp", Data: []byte("old-v"), CreatedAt: now()})
	must(t, "CreateAuthenticator", err)
	list, err := s.TOTPAuthenticators(c)
	must(t, "TOTPAuthenticators", err)
	if len(list) != 2 || list[0].ID != idU || list[0].UserID != u || string(list[0].Data) != "old-u" ||
		list[1].ID != idV || list[1].UserID != v || string(list[1].Data) != "old-v" {
		t.Fatalf("TOTPAuthenticators = %+v", list)
	}
	ok, err := s.SwapAuthenticatorData(c, idU, []byte("old-u"), []byte("new-u"))
	must(t, "SwapAuthenticatorData", err)
	if !ok {
		t.Fatal("SwapAuthenticatorData with the current data did not swap")
	}
	ok, err = s.SwapAuthenticatorData(c, idU, []byte("old-u"), []byte("other"))
	must(t, "SwapAuthenticatorData", err)
	if ok {
		t.Fatal("SwapAuthenticatorData with stale data swapped")
	}
	auths, err := s.Authenticators(c, u)
	must(t, "Authenticators", err)
	if string(auths[0].Data) != "new-u" || auths[0].LastStep != 7 {
		t.Fatalf("after the swap: %+v, want data new-u and last step 7 kept", auths[0])
	}
	auths, err = s.Authenticators(c, v)
	must(t, "Authenticators", err)
	if string(auths[0].Data) != "old-v" {
		t.Fatalf("the swap touched another user: %+v", auths[0])
	}
}

func testInTx(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "tx@example.com")
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "j1", "S", true)))

	// Committed.
	var id int64
	err := s.InTx(c, func(tx account.Store) error {
		var err error
		id, err = tx.CreateUser(c, account.User{Email: "in@example.com", DateJoined: now()})
		if err != nil {
			return err
		}
		if _, err := tx.UserByID(c, id); err != nil { // sees its own write
			return fmt.Errorf("reading own write: %w", err)
		}
		_, err = tx.CreateToken(c, account.Token{UserID: id, Purpose: "p", Token: "t", Created: now()})
		return err
	})
	must(t, "InTx", err)
	if _, err := s.UserByID(c, id); err != nil {
		t.Fatalf("committed user not found: %v", err)
	}

	// Rolled back: every kind of write, including the store's own
	// transactions run inside fn, is undone.
	boom := errors.New("boom")
	var rolledBack int64
	err = s.InTx(c, func(tx account.Store) error {
		var err error
		if rolledBack, err = tx.CreateUser(c, account.User{Email: "rollback@example.com", DateJoined: now()}); err != nil {
			return err
		}
		if err := tx.RotateRefresh(c, "j1", refresh(u, "j2", "S", true)); err != nil {
			return err
		}
		if _, err := tx.ReplaceToken(c, account.Token{UserID: id, Purpose: "p", Token: "t2", Created: now()}); err != nil {
			return err
		}
		if _, err := tx.LoadOrStoreSetting(c, "k", []byte("v")); err != nil {
			return err
		}
		if err := tx.DeleteUser(c, u); err != nil {
			return err
		}
		// A nested InTx joins the transaction.
		if err := tx.InTx(c, func(tx2 account.Store) error {
			_, err := tx2.CreateToken(c, account.Token{UserID: id, Purpose: "nested", Token: "n", Created: now()})
			return err
		}); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "InTx with failing fn", err, boom)

	if _, err := s.UserByEmail(c, "rollback@example.com"); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("rolled-back user %d exists (err %v)", rolledBack, err)
	}
	if _, err := s.UserByID(c, u); err != nil {
		t.Fatalf("rolled-back delete: %v", err)
	}
	n, err := s.DeleteRefresh(c, u, "j1", "")
	must(t, "DeleteRefresh", err)
	wantInt(t, "old refresh row after rolled-back rotation", n, 1)
	n, err = s.CountTokens(c, "p", "t", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "token replaced in rolled-back tx", n, 1)
	n, err = s.CountTokens(c, "nested", "n", time.Time{})
	must(t, "CountTokens", err)
	wantInt(t, "token of rolled-back nested InTx", n, 0)
	got, err := s.LoadOrStoreSetting(c, "k", []byte("after"))
	must(t, "LoadOrStoreSetting", err)
	if string(got) != "after" {
		t.Fatalf("rolled-back setting survived: %q", got)
	}
}

// testCommitUnflushed: a transaction let commit without a flush commits
// as any other, seen by the store at once, and rolls back as any other.
func testCommitUnflushed(t *testing.T, s account.Store) {
	c := ctx(t)
	if err := s.CommitUnflushed(c); err == nil {
		t.Fatal("CommitUnflushed outside a transaction succeeded")
	}
	u := mustUser(t, s, "unflushed@example.com")
	write := func(token string, fail error) error {
		return s.InTx(c, func(tx account.Store) error {
			if err := tx.CommitUnflushed(c); err != nil {
				return err
			}
			if _, err := tx.UserForUpdate(c, u); err != nil {
				return err
			}
			if _, err := tx.CreateToken(c, account.Token{UserID: u, Purpose: "attempt", Token: token, Created: now()}); err != nil {
				return err
			}
			return fail
		})
	}
	must(t, "InTx", write("kept", nil))
	boom := errors.New("boom")
	wantErr(t, "InTx with failing fn", write("undone", boom), boom)
	for token, want := range map[string]int{"kept": 1, "undone": 0} {
		n, err := s.CountTokens(c, "attempt", token, time.Time{})
		must(t, "CountTokens", err)
		wantInt(t, "rows of "+token, n, want)
	}
}

func testCanceledContext(t *testing.T, s account.Store) {
	c, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	_, err := s.UserByID(c, 1)
	if err == nil || errors.Is(err, account.ErrNotFound) {
		t.Fatalf("UserByID with canceled context: err = %v, want a store failure", err)
	}
	err = s.InTx(c, func(account.Store) error { return nil })
	if err == nil {
		t.Fatal("InTx with canceled context succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("calls with a canceled context took %v", d)
	}
}

// race runs fn from racers goroutines at once and returns their results.
func race[T any](fn func(i int) (T, error)) ([]T, []error) {
	res := make([]T, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res[i], errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return res, errs
}

func testRaceConsumeToken(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "race@example.com")
	_, err := s.CreateToken(c, account.Token{UserID: u, Purpose: "link", Token: "once", Created: now()})
	must(t, "CreateToken", err)
	_, errs := race(func(int) (account.Token, error) {
		return s.ConsumeToken(c, "link", "once", time.Time{})
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, account.ErrNotFound):
			t.Errorf("ConsumeToken: %v", err)
		}
	}
	wantInt(t, "successful ConsumeToken calls", wins, 1)
}

func testRaceRotateRefresh(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "racerot@example.com")
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "old", "S", true)))
	must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "bystander", "T", true)))
	_, errs := race(func(i int) (struct{}, error) {
		err := s.RotateRefresh(c, "old", refresh(u, fmt.Sprintf("new%d", i), "S", true))
		if errors.Is(err, account.ErrNotFound) {
			// As its caller does (Sessions.Refresh): the session of a
			// spent token ends.
			if _, err := s.RevokeSession(c, "S"); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, err
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, account.ErrNotFound):
			t.Errorf("RotateRefresh: %v", err)
		}
	}
	wantInt(t, "successful RotateRefresh calls", wins, 1)
	// Every loser found no row, took it for a replay and revoked the
	// session, including the winner's new row.
	if sessionRows(t, s, "S") {
		t.Fatal("session survived concurrent rotations of one token")
	}
	if !sessionRows(t, s, "T") {
		t.Fatal("concurrent rotations revoked another session")
	}
}

// testRaceRotateRevoke: a revocation that starts while a rotation of
// one of its rows is in flight (rotated, not yet committed) ends the
// session all the same, the rotation's new row included; a rotation of a
// revoked row then finds nothing. Where the store serialises its
// transactions (SQLite) the revocation simply runs after the commit; the
// case that could fail is PostgreSQL's, where the revocation's DELETE
// would wait for the old row and not see the new one.
func testRaceRotateRevoke(t *testing.T, s account.Store) {
	c := ctx(t)
	for _, tc := range []struct {
		name   string
		revoke func(u int64) (int, error)
	}{
		{"RevokeUserSessions", func(u int64) (int, error) { return s.RevokeUserSessions(c, u) }},
		{"RevokeSession", func(int64) (int, error) { return s.RevokeSession(c, "S") }},
		{"DeleteRefresh", func(u int64) (int, error) { return s.DeleteRefresh(c, u, "", "S") }},
		// A spent token of the session replayed meanwhile, and the
		// revocation its caller then makes.
		{"replay", func(u int64) (int, error) {
			if err := s.RotateRefresh(c, "spent", refresh(u, "never", "S", true)); !errors.Is(err, account.ErrNotFound) {
				return 0, fmt.Errorf("RotateRefresh of a spent token: %v, want ErrNotFound", err)
			}
			return s.RevokeSession(c, "S")
		}},
	} {
		u := mustUser(t, s, "rotrevoke-"+tc.name+"@example.com")
		must(t, "InsertRefresh", s.InsertRefresh(c, refresh(u, "old-"+tc.name, "S", true)))
		rotated, revoking := make(chan struct{}), make(chan struct{})
		revoked := make(chan error, 1)
		go func() {
			<-rotated
			close(revoking)
			_, err := tc.revoke(u)
			revoked <- err
		}()
		err := s.InTx(c, func(tx account.Store) error {
			if err := tx.RotateRefresh(c, "old-"+tc.name, refresh(u, "new-"+tc.name, "S", true)); err != nil {
				return err
			}
			close(rotated)
			<-revoking
			// Long enough for the revocation to reach the database and
			// wait there; if it has not, it runs after the commit and
			// the test passes without testing the race.
			time.Sleep(200 * time.Millisecond)
			return nil
		})
		must(t, tc.name+": RotateRefresh", err)
		must(t, tc.name, <-revoked)
		if sessionRows(t, s, "S") {
			t.Fatalf("%s during a rotation left the rotated row alive", tc.name)
		}
		wantErr(t, tc.name+": rotating the revoked row", s.RotateRefresh(c, "new-"+tc.name, refresh(u, "newer-"+tc.name, "S", true)), account.ErrNotFound)
	}
}

func testRaceAdvanceTOTPStep(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "racetotp@example.com")
	_, err := s.CreateAuthenticator(c, account.Authenticator{UserID: u, Type: "totp", Data: []byte("s"), CreatedAt: now()})
	must(t, "CreateAuthenticator", err)
	oks, errs := race(func(int) (bool, error) {
		return s.AdvanceTOTPStep(c, u, 1000, now())
	})
	wins := 0
	for i := range oks {
		if errs[i] != nil {
			t.Errorf("AdvanceTOTPStep: %v", errs[i])
		}
		if oks[i] {
			wins++
		}
	}
	wantInt(t, "accepted AdvanceTOTPStep calls", wins, 1)
}

func testRaceConsumeRecoveryCode(t *testing.T, s account.Store) {
	c := ctx(t)
	u := mustUser(t, s, "racerc@example.com")
	must(t, "ReplaceRecoveryCodes", s.ReplaceRecoveryCodes(c, u, []string{"h", "other"}))
	oks, errs := race(func(int) (bool, error) {
		return s.ConsumeRecoveryCode(c, u, "h", now())
	})
	wins := 0
	for i := range oks {
		if errs[i] != nil {
			t.Errorf("ConsumeRecoveryCode: %v", errs[i])
		}
		if oks[i] {
			wins++
		}
	}
	wantInt(t, "successful ConsumeRecoveryCode calls", wins, 1)
	n, err := s.CountRecoveryCodes(c, u)
	must(t, "CountRecoveryCodes", err)
	wantInt(t, "codes left", n, 1)
}

func testRaceLoadOrStoreSetting(t *testing.T, s account.Store) {
	c := ctx(t)
	vals, errs := race(func(i int) ([]byte, error) {
		return s.LoadOrStoreSetting(c, "key", []byte(fmt.Sprintf("value%d", i)))
	})
	for i := range vals {
		if errs[i] != nil {
			t.Fatalf("LoadOrStoreSetting: %v", errs[i])
		}
		if !bytes.Equal(vals[i], vals[0]) {
			t.Fatalf("concurrent LoadOrStoreSetting disagree: %q and %q", vals[0], vals[i])
		}
	}
}

func testPersonalTokens(t *testing.T, s account.Store) {
	c := ctx(t)
	ada := mustUser(t, s, "ada@example.com")
	bob := mustUser(t, s, "bob@example.com")
	_, err := s.PersonalTokenByHash(c, "nothing")
	wantErr(t, "PersonalTokenByHash of nothing", err, account.ErrNotFound)
	at := now()
	pt := account.PersonalToken{UserID: ada, Name: "backup script", Hash: "h1", Role: 900, Created: at, Expires: at.Add(30 * 24 * time.Hour)}
	id, err := s.CreatePersonalToken(c, pt)
	must(t, "CreatePersonalToken", err)
	pt.ID = id
	_, err = s.CreatePersonalToken(c, account.PersonalToken{UserID: bob, Name: "x", Hash: "h1", Created: at, Expires: at})
	wantErr(t, "a hash stored twice", err, account.ErrConflict)
	got, err := s.PersonalTokenByHash(c, "h1")
	must(t, "PersonalTokenByHash", err)
	if !reflect.DeepEqual(got, pt) {
		t.Fatalf("token %+v, want %+v", got, pt)
	}
	second, err := s.CreatePersonalToken(c, account.PersonalToken{UserID: ada, Name: "deploy", Hash: "h2", Created: at, Expires: at.Add(time.Hour)})
	must(t, "CreatePersonalToken", err)
	if list, _ := s.PersonalTokens(c, ada); len(list) != 2 || list[0].ID != id || list[1].ID != second || list[1].Role != 0 {
		t.Fatalf("ada's tokens %+v", list)
	}
	if list, _ := s.PersonalTokens(c, bob); len(list) != 0 {
		t.Fatalf("bob's tokens %+v", list)
	}

	used := at.Add(time.Minute)
	must(t, "SetPersonalTokenUsed", s.SetPersonalTokenUsed(c, id, used))
	wantErr(t, "SetPersonalTokenUsed of nothing", s.SetPersonalTokenUsed(c, id+second+100, used), account.ErrNotFound)
	if got, _ := s.PersonalTokenByHash(c, "h1"); !got.LastUsed.Equal(used) || got.Name != pt.Name || !got.Expires.Equal(pt.Expires) || got.Role != 900 {
		t.Fatalf("after SetPersonalTokenUsed: %+v", got)
	}

	ok, err := s.DeletePersonalToken(c, bob, id)
	must(t, "DeletePersonalToken of another's", err)
	if ok {
		t.Fatal("a user deleted another user's token")
	}
	ok, err = s.DeletePersonalToken(c, ada, id)
	must(t, "DeletePersonalToken", err)
	if _, err := s.PersonalTokenByHash(c, "h1"); !ok || !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("after DeletePersonalToken: %v %v", ok, err)
	}
	if ok, _ := s.DeletePersonalToken(c, ada, id); ok {
		t.Fatal("a token was deleted twice")
	}
	must(t, "DeleteUser", s.DeleteUser(c, ada))
	_, err = s.PersonalTokenByHash(c, "h2")
	wantErr(t, "a deleted user's token", err, account.ErrNotFound)
}
