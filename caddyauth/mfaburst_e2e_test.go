package caddyauth_test

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"
)

// burstSize is how many code checks a burst sends at once.
const burstSize = 50

// together runs fn(0) … fn(n-1) in goroutines released at the same
// moment, and returns when all have returned.
func together(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

// burst sends n requests at once and returns their answers.
func burst(n int, send func(i int) reply) []reply {
	replies := make([]reply, n)
	together(n, func(i int) { replies[i] = send(i) })
	return replies
}

// tally counts a burst's answers by status and detail ("200" for a
// session), and fails on anything but a session, a 400 or a 429.
func tally(t *testing.T, replies []reply) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range replies {
		switch {
		case r.status == 200 && r.str("access") != "":
			n["200"]++
		case r.status == 400 || r.status == 429:
			n[r.str("detail")]++
		default:
			t.Errorf("status %d body %s, want a session, a 400 or a 429", r.status, r.raw)
		}
	}
	return n
}

// compared counts the MFA code checks (failed, succeeded) audited since
// before.
func compared(audit func() []map[string]any, before map[string]int) (failed, succeeded int, now map[string]int) {
	now = auditDetails(audit())
	return now["mfa_failed"] - before["mfa_failed"], now["mfa_succeeded"] - before["mfa_succeeded"], now
}

const (
	msgInvalid     = "Invalid code."
	msgInvalidRec  = "Invalid recovery code."
	msgExhausted   = "Too many failed attempts. Challenge invalidated."
	msgGone        = "Challenge expired or invalid."
	msgLocked      = "Too many failed MFA attempts. Try again later."
	wellFormedFake = "AAAA-BBBB-CCCC-DDDD"
)

// TestMFABurstChallengeLimitE2E: however many codes arrive at once for one
// login challenge, on /mfa/verify/ or /mfa/verify-recovery/, at most
// mfa_challenge_max_attempts of them are compared, and a right code among
// them wins only if it was among those.
func TestMFABurstChallengeLimitE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, audit := withAuditLog(t, caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 5", "mfa_max_attempts 1000"), defaultBody))
		s := startCaddy(t, cf)
		const email = "burst-challenge@world.com"
		u, en := s.enrolledUser(email)
		const limit = 5
		nextStep(t)
		bad := wrongCode(t, en.secret)
		mark := auditDetails(audit())

		// Wrong TOTP codes only: exactly the limit compared, answered as
		// one after the other would be; the rest refused unseen.
		ch := s.challenge(email)
		got := tally(t, burst(burstSize, func(int) reply { return s.verify(ch, bad) }))
		failed, _, mark := compared(audit, mark)
		if failed != limit || attempts(t, u.ID) != limit {
			t.Fatalf("%d codes compared, %d failure rows, want %d: answers %v", failed, attempts(t, u.ID), limit, got)
		}
		if got[msgInvalid] != limit-1 || got[msgExhausted] != 1 || got[msgGone] != burstSize-limit {
			t.Fatalf("answers %v, want %d %q, one %q, the rest %q", got, limit-1, msgInvalid, msgExhausted, msgGone)
		}

		// Wrong recovery codes, the same.
		ch = s.challenge(email)
		got = tally(t, burst(burstSize, func(int) reply { return s.verifyRecovery(ch, wellFormedFake) }))
		failed, _, mark = compared(audit, mark)
		if failed != limit || got[msgInvalidRec] != limit-1 || got[msgExhausted] != 1 || got[msgGone] != burstSize-limit {
			t.Fatalf("%d recovery codes compared, answers %v, want %d", failed, got, limit)
		}

		// One right TOTP code among wrong ones: it wins only if fewer than
		// limit failures came before it (the success clears those, so the
		// rows left are the failures after it; the challenge is spent by
		// then, so there are none).
		nextStep(t)
		bad = wrongCode(t, en.secret)
		right := totpNow(t, en.secret)
		before := attempts(t, u.ID)
		ch = s.challenge(email)
		got = tally(t, burst(burstSize, func(i int) reply {
			if i == burstSize/2 {
				return s.verify(ch, right)
			}
			return s.verify(ch, bad)
		}))
		failed, succeeded, mark := compared(audit, mark)
		checkRightAmongWrong(t, got, failed, succeeded, before, attempts(t, u.ID), limit)

		// One valid recovery code among wrong ones, the same; it is spent
		// only if it won.
		ch = s.challenge(email)
		before = attempts(t, u.ID)
		got = tally(t, burst(burstSize, func(i int) reply {
			if i == burstSize/2 {
				return s.verifyRecovery(ch, en.recovery[0])
			}
			return s.verifyRecovery(ch, wellFormedFake)
		}))
		failed, succeeded, _ = compared(audit, mark)
		checkRightAmongWrong(t, got, failed, succeeded, before, attempts(t, u.ID), limit)
		left, err := activeStore(t).CountRecoveryCodes(context.Background(), u.ID)
		if err != nil || left != 10-succeeded {
			t.Fatalf("%d recovery codes left after %d wins, want %d (%v)", left, succeeded, 10-succeeded, err)
		}
	})
}

// checkRightAmongWrong checks a burst on one challenge of wrong codes and
// one right one: at most limit compared, at most one session, and the right
// code won only after fewer than limit failures; rowsBefore and rowsAfter
// are the user's failure rows around the burst.
func checkRightAmongWrong(t *testing.T, got map[string]int, failed, succeeded, rowsBefore, rowsAfter, limit int) {
	t.Helper()
	if got["200"] != succeeded || succeeded > 1 {
		t.Fatalf("%d sessions, %d audited successes: answers %v", got["200"], succeeded, got)
	}
	if failed+succeeded > limit {
		t.Fatalf("%d codes compared on one challenge, want at most %d: answers %v", failed+succeeded, limit, got)
	}
	if succeeded == 0 && (failed != limit || rowsAfter != rowsBefore+limit) {
		t.Fatalf("no win: %d failures audited, %d rows after %d, want %d more", failed, rowsAfter, rowsBefore, limit)
	}
	if succeeded == 1 && rowsAfter != 0 {
		t.Fatalf("a win left %d failure rows, want 0 (the challenge was spent)", rowsAfter)
	}
}

// TestMFABurstUserLimitE2E: a burst spread over many live challenges of one
// user, on verify and on recovery-codes regenerate, gets at most
// mfa_max_attempts codes compared in the window, and the lockout holds
// afterwards.
func TestMFABurstUserLimitE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, audit := withAuditLog(t, caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 0", "mfa_max_attempts 5", "mfa_lockout 600s"), defaultBody))
		s := startCaddy(t, cf)
		const email = "burst-user@world.com"
		u, en := s.enrolledUser(email)
		const limit = 5
		nextStep(t)
		bad := wrongCode(t, en.secret)
		mark := auditDetails(audit())
		spread := func() []string {
			ids := make([]string, 10)
			for i := range ids {
				ids[i] = s.challenge(email)
			}
			return ids
		}

		// Wrong codes only, over ten challenges: exactly the limit
		// compared; the one that reaches it locks the user out and ends
		// every challenge.
		ids := spread()
		got := tally(t, burst(burstSize, func(i int) reply { return s.verify(ids[i%len(ids)], bad) }))
		failed, _, mark := compared(audit, mark)
		if failed != limit || attempts(t, u.ID) != limit || mark["mfa_lockout"] != 1 {
			t.Fatalf("%d codes compared, %d failure rows, %d lockouts, want %d, %d, 1: answers %v", failed, attempts(t, u.ID), mark["mfa_lockout"], limit, limit, got)
		}
		if got[msgInvalid] != limit-1 || got[msgLocked]+got[msgGone] != burstSize-limit+1 {
			t.Fatalf("answers %v, want %d %q, the rest %q or %q", got, limit-1, msgInvalid, msgLocked, msgGone)
		}
		s.loginLockedOut(email, 590, 600)
		s.verify(mintChallenge(t, u.ID), totpNow(t, en.secret)).lockedOut(t, 590, 600)

		// Regenerate counts towards the same budget, burst or not.
		advance(t, 601*time.Second)
		const regenerate = "/auth/mfa/recovery-codes/regenerate/"
		ch := s.challenge(email)
		access, _ := s.verify(ch, totpNow(t, en.secret)).session(t, false)
		nextStep(t)
		bad = wrongCode(t, en.secret)
		_, _, mark = compared(audit, mark)
		got = tally(t, burst(burstSize, func(int) reply {
			return s.post(regenerate, map[string]string{"code": bad}, bearer(access))
		}))
		failed, _, mark = compared(audit, mark)
		if failed != limit || got[msgInvalid] != limit-1 || got[msgLocked] != burstSize-limit+1 {
			t.Fatalf("%d regenerate codes compared, answers %v, want %d", failed, got, limit)
		}
		s.post(regenerate, map[string]string{"code": totpNow(t, en.secret)}, bearer(access)).lockedOut(t, 590, 600)
		s.loginLockedOut(email, 590, 600)

		// One right code among wrong ones over ten challenges: it wins
		// only after fewer than limit failures (those the success
		// cleared), and a lockout reached after it holds.
		advance(t, 601*time.Second)
		nextStep(t)
		bad = wrongCode(t, en.secret)
		right := totpNow(t, en.secret)
		ids = spread()
		got = tally(t, burst(burstSize, func(i int) reply {
			if i == burstSize/2 {
				return s.verify(ids[i%len(ids)], right)
			}
			return s.verify(ids[i%len(ids)], bad)
		}))
		failed, succeeded, _ := compared(audit, mark)
		rows := attempts(t, u.ID)
		if got["200"] != succeeded || succeeded > 1 {
			t.Fatalf("%d sessions, %d audited successes: answers %v", got["200"], succeeded, got)
		}
		// rows are the failures after the success (or all of them).
		if rows > limit || (succeeded == 1 && failed-rows > limit-1) || (succeeded == 0 && failed != limit) {
			t.Fatalf("%d failures, %d success, %d rows left: more than %d compared in a budget; answers %v", failed, succeeded, rows, limit, got)
		}
		if rows == limit {
			s.loginLockedOut(email, 590, 600)
		} else {
			s.challenge(email)
		}
	})
}

// TestMFABurstPageE2E: the MFA page's TOTP and recovery-code forms share
// the verify endpoints' checks, so a burst of posts from one browser gets
// no more codes compared than mfa_challenge_max_attempts either.
func TestMFABurstPageE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, audit := withAuditLog(t, caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 5", "mfa_max_attempts 1000"), browserBody))
		s := startCaddy(t, cf)
		const email = "burst-page@world.com"
		u, en := s.enrolledUser(email)
		const limit = 5
		nextStep(t)
		bad := wrongCode(t, en.secret)
		mark := auditDetails(audit())
		for _, field := range []string{"code", "recovery_code"} {
			form := url.Values{"code": {bad}}
			if field == "recovery_code" {
				form = url.Values{"recovery_code": {wellFormedFake}}
			}
			b := newFormBrowser(t)
			p := b.loginForm("/dash", email, mfaPass).expect(t, http.StatusSeeOther)
			csrf := b.get(p.location()).expect(t, 200).csrf(t)
			form.Set("csrf_token", csrf)
			form.Set("next", "/dash")
			before := attempts(t, u.ID)
			statuses := map[int]int{}
			var mu sync.Mutex
			burst(burstSize, func(int) reply {
				p := b.post("/auth/page/mfa", form)
				mu.Lock()
				statuses[p.status]++
				mu.Unlock()
				return reply{}
			})
			var failed int
			failed, _, mark = compared(audit, mark)
			if failed != limit || attempts(t, u.ID)-before != limit || statuses[http.StatusOK] != 0 {
				t.Fatalf("%s form: %d codes compared, %d failure rows, want %d; statuses %v", field, failed, attempts(t, u.ID)-before, limit, statuses)
			}
		}
	})
}
