package caddyauth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// TestMailQueueSurvivesReloadE2E queues mails while the SMTP server
// hangs, reloads a changed config, and sees every queued mail arrive once
// the server answers (before: the old app's Stop dropped them all as "mail
// not sent", reason shutdown). With the same mail settings the queue
// carries on; with other ones it hands its mails over to the new queue.
func TestMailQueueSurvivesReloadE2E(t *testing.T) {
	for _, c := range []struct{ name, from string }{
		{"same_settings", "Test site <no-reply@example.com>"},
		{"other_settings", "Renamed site <no-reply@example.com>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mail := mailOptions(t)
			proxy := newCutProxy(t, mailpit.smtp)
			proxy.setCut(true) // the SMTP server accepts and never answers
			mail = strings.Replace(mail, mailpit.smtp, proxy.addr(), 1)
			store := "store sqlite " + t.TempDir() + "/a.db"
			s := startCaddy(t, caddyfile(store, "site_name Before\n"+mail, defaultBody))

			hash := mustCreateUser(t, uniqueEmail(t, "seed"), userPass, 0).PasswordHash
			st, err := caddyauth.ActiveStore()
			if err != nil {
				t.Fatal(err)
			}
			var users []string
			for i := range 4 {
				email := uniqueEmail(t, fmt.Sprintf("queued%d", i))
				if _, err := st.CreateUser(context.Background(), account.User{
					Email: email, PasswordHash: hash, IsActive: true, EmailVerified: true, DateJoined: time.Now(),
				}); err != nil {
					t.Fatal(err)
				}
				s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
				users = append(users, email)
			}

			reloaded := strings.Replace(mail, "Test site <no-reply@example.com>", c.from, 1)
			s.reload(caddyfile(store, "site_name After\n"+reloaded, defaultBody))
			if got := metric(t, `caddy_jwt_allauth_mails_not_sent_total{kind="password_reset",reason="shutdown"}`); got != 0 {
				t.Fatalf("the reload dropped %v queued mails", got)
			}

			// The server comes back: the held connection drops, the retry
			// and the rest of the queue go through.
			proxy.setCut(true)
			proxy.setCut(false)
			for _, email := range users {
				m := waitMails(t, email, 1)
				if !strings.Contains(m.Subject, "Before") {
					t.Fatalf("a mail queued before the reload is not the one rendered then: %q", m.Subject)
				}
			}
			if got := metric(t, `caddy_jwt_allauth_mails_sent_total{kind="password_reset"}`); got != float64(len(users)) {
				t.Fatalf("mails_sent_total{password_reset} is %v after the reload, want %d", got, len(users))
			}
		})
	}
}

// TestMetricsSurviveReloadE2E: a count made before a reload is still
// there after it, and counting goes on from it, for the realm's counters
// and the Redis limiter's alike (before: every counter restarted from zero
// in the new config's registry).
func TestMetricsSurviveReloadE2E(t *testing.T) {
	store := backends()[0].store(t)
	// A Redis that refuses every connection: each throttle check falls
	// back to memory and is counted.
	opts := "rate_limit redis redis://127.0.0.1:1/0\nthrottle login_email 10 5m"
	s := startCaddy(t, caddyfile(store, opts, defaultBody))
	const logins, fallbacks = `caddy_jwt_allauth_logins_total{result="success"}`, "caddy_jwt_allauth_limiter_fallbacks_total"
	email := uniqueEmail(t, "counted")
	mustCreateUser(t, email, userPass, 0)
	before := metric(t, logins)
	s.login(email, userPass)
	if got := metric(t, logins); got != before+1 {
		t.Fatalf("%s is %v after a login, want %v", logins, got, before+1)
	}
	fell := metric(t, fallbacks)
	if fell == 0 {
		t.Fatal("no fallback counted with Redis down")
	}

	s.reload(caddyfile(store, opts+"\nsite_name Reloaded", defaultBody))
	if got := metric(t, logins); got != before+1 {
		t.Fatalf("%s is %v after the reload, want %v", logins, got, before+1)
	}
	if got := metric(t, fallbacks); got != fell {
		t.Fatalf("%s is %v after the reload, want %v", fallbacks, got, fell)
	}
	s.login(email, userPass)
	if got := metric(t, logins); got != before+2 {
		t.Fatalf("%s is %v after a login past the reload, want %v", logins, got, before+2)
	}
	if got := metric(t, fallbacks); got <= fell {
		t.Fatalf("%s is %v after a login past the reload, want more than %v", fallbacks, got, fell)
	}
}
