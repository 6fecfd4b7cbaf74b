package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/mail"
)

// flakyMailer fails its first failures sends, then records the mails.
type flakyMailer struct {
	mu       sync.Mutex
	failures int
	calls    int
	sent     []mail.Message
	done     chan struct{}
}

func (f *flakyMailer) Send(_ context.Context, m mail.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.failures {
		return errors.New("server down")
	}
	f.sent = append(f.sent, m)
	close(f.done)
	return nil
}

func TestMailQueueRetries(t *testing.T) {
	fm := &flakyMailer{failures: 2, done: make(chan struct{})}
	q := newMailQueue(fm, zap.NewNop(), nil, func(string) zap.Field { return zap.Skip() })
	q.backoff = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	q.enqueue(mail.Message{To: "a@example.com", Subject: "s", Text: "t"})
	q.start()
	defer q.stop()
	select {
	case <-fm.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the mail was not sent after retries")
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if fm.calls != 3 || len(fm.sent) != 1 {
		t.Fatalf("calls %d, sent %d", fm.calls, len(fm.sent))
	}
}

func TestMailQueueGivesUpAndStops(t *testing.T) {
	fm := &flakyMailer{failures: 100, done: make(chan struct{})}
	q := newMailQueue(fm, zap.NewNop(), nil, func(string) zap.Field { return zap.Skip() })
	q.backoff = []time.Duration{time.Millisecond}
	q.start()
	q.enqueue(mail.Message{To: "a@example.com"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		fm.mu.Lock()
		calls := fm.calls
		fm.mu.Unlock()
		if calls == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls %d, want 2 (one try, one retry)", calls)
		}
		time.Sleep(time.Millisecond)
	}
	q.stop()
	// A full queue drops instead of blocking the request.
	for i := range mailQueueSize + 10 {
		q.enqueue(mail.Message{Kind: strconv.Itoa(i % 4), To: strconv.Itoa(i) + "@example.com"})
	}
}

// blockingMailer holds every send until release is closed, then records it.
type blockingMailer struct {
	release chan struct{}
	mu      sync.Mutex
	sent    []mail.Message
}

func (b *blockingMailer) Send(ctx context.Context, m mail.Message) error {
	select {
	case <-b.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, m)
	return nil
}

// TestMailQueueBounds: one kind of mail holds at most its share of the queue and
// one address at most mailQueuePerRecipient places, so a flood leaves room
// for other mails; every mail refused, and every mail still queued at
// stop, is logged at error level and counted by kind and reason.
func TestMailQueueBounds(t *testing.T) {
	reg := prometheus.NewRegistry()
	met, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.ErrorLevel)
	bm := &blockingMailer{release: make(chan struct{})}
	q := newMailQueue(bm, zap.New(core), met, func(addr string) zap.Field { return zap.String("to", addr) })

	for i := range mailQueuePerKind + 20 {
		q.enqueue(mail.Message{Kind: account.MailEmailConfirmation, To: fmt.Sprintf("flood-%d@example.com", i)})
	}
	for range mailQueuePerRecipient + 3 {
		q.enqueue(mail.Message{Kind: account.MailPasswordReset, To: "Victim@example.com"})
	}
	q.enqueue(mail.Message{Kind: account.MailPasswordReset, To: "victim@EXAMPLE.com "})
	q.enqueue(mail.Message{Kind: account.MailPasswordReset, To: "other@example.com"})

	notSent := func(kind, reason string) float64 {
		return testutil.ToFloat64(met.mailsNotSent.WithLabelValues(kind, reason))
	}
	if got := notSent(account.MailEmailConfirmation, mailKindLimit); got != 20 {
		t.Fatalf("kind_limit refusals %v, want 20", got)
	}
	if got := notSent(account.MailPasswordReset, mailRecipientLimit); got != 4 {
		t.Fatalf("recipient_limit refusals %v, want 4 (the address is compared case-insensitively)", got)
	}
	if got := logs.FilterMessage("mail not sent").Len(); got != 24 {
		t.Fatalf("%d error lines for mails not sent, want 24", got)
	}

	// The rest go out in order once the server answers.
	q.start()
	close(bm.release)
	want := mailQueuePerKind + mailQueuePerRecipient + 1
	deadline := time.Now().Add(5 * time.Second)
	for {
		bm.mu.Lock()
		n := len(bm.sent)
		bm.mu.Unlock()
		if n == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mails sent, want %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
	bm.mu.Lock()
	last := bm.sent[len(bm.sent)-1]
	bm.mu.Unlock()
	if last.To != "other@example.com" {
		t.Fatalf("last mail sent to %q, want the last one queued", last.To)
	}
	if got := testutil.ToFloat64(met.mailsSent.WithLabelValues(account.MailPasswordReset)); got != mailQueuePerRecipient+1 {
		t.Fatalf("mails_sent_total{password_reset} %v", got)
	}
	// With the sent mails released, the bounds have room again.
	q.enqueue(mail.Message{Kind: account.MailPasswordReset, To: "victim@example.com"})
	if got := notSent(account.MailPasswordReset, mailRecipientLimit); got != 4 {
		t.Fatalf("a bound kept counting sent mails: %v refusals", got)
	}
	q.stop()
}

// TestMailQueueKindShares: every kind flooding at once still leaves the
// queue room, so each kind keeps its own share (before: a flood of two
// kinds, half the queue each, filled it and an invitation was refused
// queue_full).
func TestMailQueueKindShares(t *testing.T) {
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	q := newMailQueue(&blockingMailer{release: make(chan struct{})}, zap.NewNop(), met, func(string) zap.Field { return zap.Skip() })
	flood := func(kind string) {
		for i := range mailQueueSize {
			q.enqueue(mail.Message{Kind: kind, To: fmt.Sprintf("%s-%d@example.com", kind, i)})
		}
	}
	queued := func(kind string) int {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.byKind[kind]
	}
	// The anonymous kinds first: reset requests and resent confirmations.
	flood(account.MailPasswordReset)
	flood(account.MailEmailConfirmation)
	q.enqueue(mail.Message{Kind: account.MailInvitation, To: "invitee@example.com"})
	if queued(account.MailInvitation) != 1 {
		t.Fatalf("an invitation after a flood of two kinds was refused: %v queue_full",
			testutil.ToFloat64(met.mailsNotSent.WithLabelValues(account.MailInvitation, mailQueueFull)))
	}
	for _, kind := range account.MailKinds {
		flood(kind)
	}
	for _, kind := range account.MailKinds {
		if got := queued(kind); got != mailQueuePerKind {
			t.Errorf("%d %s mails queued, want its share %d", got, kind, mailQueuePerKind)
		}
		if got := testutil.ToFloat64(met.mailsNotSent.WithLabelValues(kind, mailQueueFull)); got != 0 {
			t.Errorf("%v %s mails refused queue_full: the shares add up to more than the queue", got, kind)
		}
	}
}

// TestMailQueueSharedAcrossUsers: a second app on the same mail settings
// takes the running queue, and the first one letting go stops nothing;
// the mails queued meanwhile go out through the newest app's transport.
func TestMailQueueSharedAcrossUsers(t *testing.T) {
	key := "test-" + t.Name()
	nop := func(string) zap.Field { return zap.Skip() }
	first := &blockingMailer{release: make(chan struct{})}
	a, err := acquireMailQueue(key, &mailUser{mailer: first, logger: zap.NewNop(), tag: nop})
	if err != nil {
		t.Fatal(err)
	}
	a.queue.start()
	for i := range 3 {
		a.queue.enqueue(mail.Message{Kind: account.MailPasswordReset, To: fmt.Sprintf("r%d@example.com", i)})
	}
	second := &blockingMailer{release: make(chan struct{})}
	core, logs := observer.New(zap.ErrorLevel)
	b, err := acquireMailQueue(key, &mailUser{mailer: second, logger: zap.New(core), tag: nop})
	if err != nil {
		t.Fatal(err)
	}
	if b.queue != a.queue {
		t.Fatal("the second app got a queue of its own")
	}
	if err := a.release(); err != nil {
		t.Fatal(err)
	}
	// The send the first transport holds is cut short only when the
	// queue stops; so far it waits. Release both transports.
	close(second.release)
	close(first.release)
	waitSent(t, func() int { return first.count() + second.count() }, 3)
	if n := logs.FilterMessage("mail not sent").Len(); n != 0 {
		t.Fatalf("%d mails not sent", n)
	}
	if err := b.release(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mailQueues.References(key); ok {
		t.Fatal("the queue outlived its last user")
	}
}

// TestMailQueueHandOver: when the mail settings change, the old queue,
// once its last user let go, hands its queued mails to the new one.
func TestMailQueueHandOver(t *testing.T) {
	nop := func(string) zap.Field { return zap.Skip() }
	core, logs := observer.New(zap.ErrorLevel)
	old := &blockingMailer{release: make(chan struct{})}
	a, err := acquireMailQueue("test-old-"+t.Name(), &mailUser{mailer: old, logger: zap.New(core), tag: nop})
	if err != nil {
		t.Fatal(err)
	}
	a.queue.start()
	for i := range 3 {
		a.queue.enqueue(mail.Message{Kind: account.MailInvitation, To: fmt.Sprintf("i%d@example.com", i)})
	}
	next := &blockingMailer{release: make(chan struct{})}
	close(next.release)
	b, err := acquireMailQueue("test-new-"+t.Name(), &mailUser{mailer: next, logger: zap.New(core), tag: nop})
	if err != nil {
		t.Fatal(err)
	}
	b.queue.start()
	if err := a.release(); err != nil { // the old sender's send in flight is cut short
		t.Fatal(err)
	}
	// A request of the old config still in flight queues one more.
	a.queue.enqueue(mail.Message{Kind: account.MailInvitation, To: "late@example.com"})
	waitSent(t, next.count, 4)
	next.mu.Lock()
	first := next.sent[0].To
	next.mu.Unlock()
	if first != "i0@example.com" {
		t.Fatalf("first mail handed over went to %s, want the oldest", first)
	}
	if n := logs.FilterMessage("mail not sent").Len(); n != 0 {
		t.Fatalf("%d mails not sent", n)
	}
	if err := b.release(); err != nil {
		t.Fatal(err)
	}
}

// stuckMailer holds its first send until cut is closed, whatever its
// context says (as an SMTP server holding the connection does), then fails
// it; it records the later ones.
type stuckMailer struct {
	started, cut chan struct{}
	blockingMailer
}

func (s *stuckMailer) Send(ctx context.Context, m mail.Message) error {
	select {
	case s.started <- struct{}{}:
		<-s.cut
		return errors.New("connection dropped")
	default:
	}
	return s.blockingMailer.Send(ctx, m)
}

// TestMailQueueStuckSendFollowsHandOver: a send that does not notice the
// stop delays a reload by stopWait at most, and its mail follows the
// handed-over ones once the send returns.
func TestMailQueueStuckSendFollowsHandOver(t *testing.T) {
	nop := func(string) zap.Field { return zap.Skip() }
	stuck := &stuckMailer{started: make(chan struct{}), cut: make(chan struct{})}
	old := newMailQueue(stuck, zap.NewNop(), nil, nop)
	old.stopWait = 10 * time.Millisecond
	old.start()
	old.enqueue(mail.Message{Kind: account.MailInvitation, To: "first@example.com"})
	<-stuck.started
	old.enqueue(mail.Message{Kind: account.MailInvitation, To: "second@example.com"})
	rec := &blockingMailer{release: make(chan struct{})}
	close(rec.release)
	next := newMailQueue(rec, zap.NewNop(), nil, nop)
	next.start()
	defer next.stop()
	began := time.Now()
	old.stopAndHandOver(next)
	if d := time.Since(began); d > time.Second {
		t.Fatalf("the hand-over waited %v for a stuck send", d)
	}
	waitSent(t, rec.count, 1)
	close(stuck.cut)
	waitSent(t, rec.count, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.sent[0].To != "second@example.com" || rec.sent[1].To != "first@example.com" {
		t.Fatalf("sent %v", rec.sent)
	}
}

func (b *blockingMailer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

// waitSent waits until sent() reports want mails.
func waitSent(t *testing.T, sent func() int, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sent() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d mails sent, want %d", sent(), want)
		}
		time.Sleep(time.Millisecond)
	}
	if n := sent(); n != want {
		t.Fatalf("%d mails sent, want %d", n, want)
	}
}

// TestMailQueueStopReportsPending: mails still queued when the server
// stops, or queued after it stopped, are each logged and counted as not
// sent, never dropped silently.
func TestMailQueueStopReportsPending(t *testing.T) {
	met, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.ErrorLevel)
	bm := &blockingMailer{release: make(chan struct{})}
	q := newMailQueue(bm, zap.New(core), met, func(addr string) zap.Field { return zap.String("to", addr) })
	q.start()
	for i := range 3 {
		q.enqueue(mail.Message{Kind: account.MailInvitation, To: fmt.Sprintf("p%d@example.com", i)})
	}
	q.stop()
	// A request still in flight at shutdown queues one more.
	q.enqueue(mail.Message{Kind: account.MailInvitation, To: "late@example.com"})
	if got := testutil.ToFloat64(met.mailsNotSent.WithLabelValues(account.MailInvitation, mailShutdown)); got != 4 {
		t.Fatalf("shutdown not-sent count %v, want 4", got)
	}
	if got := logs.FilterMessage("mail not sent").FilterField(zap.String("reason", mailShutdown)).Len(); got != 4 {
		t.Fatalf("%d shutdown error lines, want 4", got)
	}
}

func TestMailCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`jwt_allauth {
		public_url https://example.com
		invite_roles 1000 300
		password_reset_ttl 15m
		password_set_redirect /welcome/
		mail smtp smtp.example.com:587 {
			username {env.SMTP_USER}
			password {env.SMTP_PASSWORD}
			from "Example <no-reply@example.com>"
			tls starttls
			templates /etc/mail
		}
		site_name Example
	}`)
	var a App
	if err := a.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if a.Mail == nil || a.Mail.Transport != "smtp" || a.Mail.Address != "smtp.example.com:587" || a.Mail.From != "Example <no-reply@example.com>" ||
		a.Mail.Password != "{env.SMTP_PASSWORD}" || a.Mail.Templates != "/etc/mail" || a.SiteName != "Example" ||
		len(a.InviteRoles) != 2 || a.InviteRoles[1] != 300 || a.PasswordSetRedirect != "/welcome/" || time.Duration(a.PasswordResetTTL) != 15*time.Minute {
		t.Fatalf("parsed: %+v %+v", a, a.Mail)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"jwt_allauth {\n mail smtp\n}",
		"jwt_allauth {\n mail carrier-pigeon\n}",
		"jwt_allauth {\n mail log {\n username x\n }\n}",
		"jwt_allauth {\n invite_roles staff\n}",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
	if err := checkPublicURL("example.com"); err == nil {
		t.Error("a public_url without scheme was accepted")
	}
}

// newMailQueue returns a queue with one sender: mails leave in the order
// they were queued, so a newer link (a second invitation, a resent
// confirmation) never arrives before the older one it replaced.
func newMailQueue(m mailer, logger *zap.Logger, met *metrics, tag func(addr string) zap.Field) *mailQueue {
	return newMailQueueFor(&mailUser{mailer: m, logger: logger, metrics: met, tag: tag})
}

// stop ends the sender (an SMTP exchange in flight is cancelled and its
// mail stays queued) and waits for it. Every mail still queued is reported
// as not sent.
func (q *mailQueue) stop() { q.stopAndHandOver(nil) }
