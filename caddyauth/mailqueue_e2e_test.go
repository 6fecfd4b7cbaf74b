package caddyauth_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
)

// TestMailFloodE2E floods the mail queue with one kind of mail while the
// SMTP server hangs: the flood is bounded to its share of the queue, each
// refused mail is counted, and a confirmation mail queued after the flood
// still arrives once the server answers again (before: 256 reset mails
// filled the queue and every later mail was dropped without a metric).
func TestMailFloodE2E(t *testing.T) {
	mail := mailOptions(t)
	proxy := newCutProxy(t, mailpit.smtp)
	proxy.setCut(true) // the SMTP server accepts and never answers
	mail = strings.Replace(mail, mailpit.smtp, proxy.addr(), 1)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "email_verification optional\n"+mail, defaultBody))

	// The flood: password-reset requests for many real accounts. The
	// accounts share one password hash, so setting them up costs no hashing.
	const flood, kindShare = 300, caddyauth.MailQueuePerKind
	hash := mustCreateUser(t, uniqueEmail(t, "seed"), userPass, 0).PasswordHash
	st, err := caddyauth.ActiveStore()
	if err != nil {
		t.Fatal(err)
	}
	prefix := "flood-" + randomHex(t, 4)
	for i := range flood {
		if _, err := st.CreateUser(context.Background(), caddyauth.User{
			Email: fmt.Sprintf("%s-%d@example.com", prefix, i), PasswordHash: hash,
			IsActive: true, EmailVerified: true, DateJoined: time.Now(),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < flood; i = next.Add(1) - 1 {
				r, err := s.try("POST", "/auth/password/reset/", map[string]string{"email": fmt.Sprintf("%s-%d@example.com", prefix, i)})
				if err != nil || r.status != 200 {
					t.Errorf("reset request %d: %v %d %s", i, err, r.status, r.raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	newcomer := uniqueEmail(t, "newcomer")
	s.post("/auth/registration/", map[string]string{"email": newcomer, "password1": userPass, "password2": userPass,
		"first_name": "New", "last_name": "Comer"}).expect(t, 201)

	notSent := func(kind, reason string) float64 {
		return metric(t, `caddy_jwt_allauth_mails_not_sent_total{kind="`+kind+`",reason="`+reason+`"}`)
	}
	if got := notSent("password_reset", "kind_limit"); got != float64(flood-kindShare) {
		t.Fatalf("%v reset mails refused by the per-kind bound, want %d", got, flood-kindShare)
	}
	if got := notSent("email_confirmation", "queue_full") + notSent("email_confirmation", "kind_limit"); got != 0 {
		t.Fatalf("%v confirmation mails refused", got)
	}

	// The server comes back: the held connection drops, the retry and the
	// rest of the queue go through, the confirmation mail among them.
	proxy.setCut(true)
	proxy.setCut(false)
	m := waitMails(t, newcomer, 1)
	if !strings.Contains(m.Text, testBase+"/auth/") {
		t.Fatalf("confirmation mail without a link: %q", m.Text)
	}
	if got := metric(t, `caddy_jwt_allauth_mails_sent_total{kind="email_confirmation"}`); got != 1 {
		t.Fatalf("mails_sent_total for email_confirmation is %v, want 1", got)
	}
}
