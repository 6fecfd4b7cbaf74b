package account_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
)

// BenchmarkRefusedVerify measures one refused second factor (a wrong
// TOTP code against a live login challenge, with the user's lockout on)
// on an account without history and on one with 100,000 failures of
// earlier lockout windows and 100,000 expired challenges: the cost must
// not grow with what the account went through before.
//
//	go test -run '^$' -bench BenchmarkRefusedVerify ./caddyauth/account/
//
// The user's lockout counts 5 failures in 60 s; the clock moves 61 s
// before every fourth check, so the user is never locked out and every
// check reads the user's newest failures. The challenge's own budget is
// off (its count would grow with b.N on the one challenge every check
// answers; a challenge dies at 5 failures by default). Challenges live
// for 1000 hours, which keeps the
// failures of earlier windows in the table (an MFA failure is kept while
// it can count towards a challenge's budget).
func BenchmarkRefusedVerify(b *testing.B) {
	for _, history := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			rl := coretest.New(b, account.Config{
				MFA:             account.MFAOptional,
				MFAUserMax:      5,
				MFALockout:      time.Minute,
				MFAChallengeTTL: 1000 * time.Hour,
				Throttles:       map[string]account.Throttle{"mfa_verify_ip": {}},
			})
			u, secret := enrolledUser(b, rl, "bench@example.com")
			seedHistory(b, rl, u.ID, history)
			step, err := rl.Sessions.Login(ctx, origin, "bench@example.com", password)
			if err != nil || step.Challenge == "" {
				b.Fatalf("login: %+v, %v; want a challenge", step, err)
			}
			wrong := wrongCode(coretest.TOTPCode(b, secret, rl.Clock.Now()))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%4 == 0 {
					rl.Clock.Advance(61 * time.Second)
				}
				_, err := rl.Challenges.Verify(ctx, origin, account.SecondFactor{Challenge: step.Challenge, Code: wrong})
				var refusal *account.Refusal
				if !errors.As(err, &refusal) || refusal.Detail != msgInvalidCode {
					b.Fatalf("check %d: %v, want %q", i, err, msgInvalidCode)
				}
			}
		})
	}
}

// enrolledUser creates an account with the test password and TOTP, and
// returns it with its TOTP secret.
func enrolledUser(b *testing.B, rl *coretest.Realm, email string) (account.User, string) {
	b.Helper()
	u, err := rl.Users.Create(ctx, email, password, account.RoleUser)
	if err != nil {
		b.Fatal(err)
	}
	step, err := rl.Sessions.Login(ctx, origin, email, password)
	if err != nil {
		b.Fatal(err)
	}
	setup, err := rl.MFA.Setup(ctx, origin, account.Enrolment{Access: step.Pair.Access})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rl.MFA.Activate(ctx, origin, account.Enrolment{Access: step.Pair.Access}, coretest.TOTPCode(b, setup.Secret, rl.Clock.Now())); err != nil {
		b.Fatal(err)
	}
	return u, setup.Secret
}

// seedHistory writes n failures of the user's earlier lockout windows
// (older than the window, young enough to be kept) and n login
// challenges that expired long ago, a thousand of each per transaction
// (one must end within the store's query timeout).
func seedHistory(b *testing.B, rl *coretest.Realm, userID int64, n int) {
	b.Helper()
	now := rl.Clock.Now()
	for from := 0; from < n; from += 1000 {
		if err := rl.Store.InTx(ctx, func(tx account.Store) error {
			for i := from; i < min(from+1000, n); i++ {
				if _, err := tx.CreateToken(ctx, account.Token{UserID: userID, Purpose: attemptPurpose,
					Token: fmt.Sprintf("old-challenge-%d", i%1000), Created: now.Add(-2*time.Minute - time.Duration(i)*time.Millisecond)}); err != nil {
					return err
				}
				if _, err := tx.CreateToken(ctx, account.Token{UserID: userID, Purpose: "mfa_login_challenge",
					Token: fmt.Sprintf("expired-%d", i), Created: now.Add(-2000 * time.Hour)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}
