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
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// TestMailFloodE2E floods the mail queue with the two kinds of mail
// anyone can trigger while the SMTP server hangs: each flood is bounded to
// its kind's share of the queue, each refused mail is counted, and a
// confirmation mail queued after the first flood and invitations queued
// after both still arrive once the server answers again (before: 256 reset
// mails filled the queue and every later mail was dropped without a
// metric; then two floods of half the queue each left no room for
// invitations).
func TestMailFloodE2E(t *testing.T) {
	mail := mailOptions(t)
	proxy := newCutProxy(t, mailpit.smtp)
	proxy.setCut(true) // the SMTP server accepts and never answers
	mail = strings.Replace(mail, mailpit.smtp, proxy.addr(), 1)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", "registration invitations\nemail_verification optional\n"+mail, defaultBody))

	// The floods: password-reset requests for many real accounts, then
	// resent confirmations for many unconfirmed ones. The accounts share
	// one password hash, so setting them up costs no hashing.
	const flood, kindShare = 300, caddyauth.MailQueuePerKind
	hash := mustCreateUser(t, uniqueEmail(t, "seed"), userPass, 0).PasswordHash
	st, err := caddyauth.ActiveStore()
	if err != nil {
		t.Fatal(err)
	}
	prefix := "flood-" + randomHex(t, 4)
	for i := range flood {
		for _, verified := range []bool{true, false} {
			if _, err := st.CreateUser(context.Background(), account.User{
				Email: fmt.Sprintf("%s-%d-%t@example.com", prefix, i, verified), PasswordHash: hash,
				IsActive: true, EmailVerified: verified, DateJoined: time.Now(),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	floodOf := func(path string, verified bool) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := next.Add(1) - 1; i < flood; i = next.Add(1) - 1 {
					r, err := s.try("POST", path, map[string]string{"email": fmt.Sprintf("%s-%d-%t@example.com", prefix, i, verified)})
					if err != nil || r.status != 200 {
						t.Errorf("%s request %d: %v %d %s", path, i, err, r.status, r.raw)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	floodOf("/auth/password/reset/", true)
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

	// The second flood: the newcomer's confirmation holds one place of
	// its kind's share.
	floodOf("/auth/registration/resend-email/", false)
	if got := notSent("email_confirmation", "kind_limit"); got != float64(flood-(kindShare-1)) {
		t.Fatalf("%v resent confirmations refused by the per-kind bound, want %d", got, flood-(kindShare-1))
	}
	mustCreateUser(t, "inviter@world.com", userPass, account.RoleSuperuser)
	inviter, _ := s.login("inviter@world.com", userPass)
	var invitees []string
	for i := range 3 {
		invitee := uniqueEmail(t, fmt.Sprintf("invitee%d", i))
		s.post("/auth/registration/user-register/", map[string]any{"email": invitee, "role": 0}, bearer(inviter)).expect(t, 201)
		invitees = append(invitees, invitee)
	}
	if got := notSent("invitation", "queue_full") + notSent("invitation", "kind_limit"); got != 0 {
		t.Fatalf("%v invitations after two floods were refused", got)
	}

	// The server comes back: the held connection drops, the retry and the
	// rest of the queue go through, the confirmation and the invitation
	// among them.
	proxy.setCut(true)
	proxy.setCut(false)
	m := waitMails(t, newcomer, 1)
	if !strings.Contains(m.Text, testBase+"/auth/") {
		t.Fatalf("confirmation mail without a link: %q", m.Text)
	}
	for _, invitee := range invitees {
		waitMails(t, invitee, 1)
	}
	if got := metric(t, `caddy_jwt_allauth_mails_sent_total{kind="email_confirmation"}`); got != float64(kindShare) {
		t.Fatalf("mails_sent_total for email_confirmation is %v, want %d", got, kindShare)
	}
}
