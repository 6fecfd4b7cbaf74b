package caddyauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/mail"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// MailConfig says how the realm's mails (e-mail confirmation, invitation,
// password reset, "you already have an account") leave the server.
type MailConfig struct {
	// "log" (default) or "smtp". With "log" no mail is sent: each message,
	// links included, is written to Caddy's log at info level. That is for
	// local use only: anyone who can read the log can follow the links.
	Transport string `json:"transport,omitempty"`

	// The SMTP server as host:port (smtp only). Port 465 usually wants
	// `tls implicit`, 587 and 25 `tls starttls`.
	Address string `json:"address,omitempty"`

	// SMTP credentials (smtp only). When a username is given, the best
	// mechanism the server offers over the encrypted connection is used
	// (never with `tls none`). Give the password as a
	// placeholder such as `{env.SMTP_PASSWORD}` so it is not saved in
	// Caddy's autosaved config.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// The From address, e.g. `Example <no-reply@example.com>`. Required with
	// smtp.
	From string `json:"from,omitempty"`

	// Transport security (smtp only): "starttls" (default; the server must
	// offer STARTTLS), "implicit" (TLS from the first byte, SMTPS),
	// "opportunistic" (STARTTLS when offered, else plain text) or "none"
	// (plain text, for a local relay or a test sink only).
	TLS string `json:"tls,omitempty"`

	// A directory of templates replacing the built-in ones, file by file.
	// For each mail (`email_confirmation`, `invitation`, `account_exists`,
	// `password_reset`) it may hold `<name>.subject.txt`, `<name>.txt` (the
	// text body, Go text/template) and `<name>.html` (the HTML body, Go
	// html/template). Missing files keep the built-in version. Templates see
	// `.SiteName`, `.Email`, `.Link`, `.Expires` (how long the link lives,
	// e.g. "1 hour") and, in account_exists, `.ResetRequestURL`.
	Templates string `json:"templates,omitempty"`
}

// mailer sends one mail.
type mailer interface {
	Send(ctx context.Context, m mail.Message) error
}

// logMailer writes mails to the log instead of sending them.
type logMailer struct {
	logger *zap.Logger
}

func (l logMailer) Send(_ context.Context, m mail.Message) error {
	l.logger.Info("mail written to this log, not sent: mail log is for local use only",
		zap.String("to", m.To),
		zap.String("subject", m.Subject),
		zap.String("text", m.Text))
	return nil
}

// mailQueue sends mails in the background, so a slow or failing SMTP
// server never changes an HTTP answer (no enumeration through errors or
// timing). It is bounded three ways, so a flood of one kind of mail or to
// one address cannot crowd out the others: at most mailQueueSize mails in
// all, mailQueuePerKind of one kind and mailQueuePerRecipient to one
// address, each counted from queueing until its last delivery attempt.
// A mail that is not sent (refused by a bound, given up after the retries,
// or still queued at shutdown) is logged at error level and counted in
// mails_not_sent_total{kind,reason}. A failed send is retried after each of
// the backoff delays.
//
// A queue outlives a config reload that keeps the mail settings (see
// acquireMailQueue): each app using it is one of its users, and the newest
// one's transport, logger and metrics serve every mail, so nothing the
// queue uses belongs to a config that is gone.
type mailQueue struct {
	backoff  []time.Duration
	stopWait time.Duration // how long stop waits for a send in flight

	mu          sync.Mutex
	users       []*mailUser    // oldest first; the last one serves
	pending     []mail.Message // oldest first
	byKind      map[string]int
	byRecipient map[string]int
	wake        chan struct{} // one token: pending grew
	cancel      context.CancelFunc
	done        chan struct{} // closed when the sender returns
	stopped     bool          // stop ran: later mails go to handedTo, or are not sent
	handedTo    *mailQueue
}

// mailUser is what one app lends the queue it uses.
type mailUser struct {
	mailer  mailer
	logger  *zap.Logger
	metrics *metrics
	tag     func(addr string) zap.Field // how a recipient appears in logs
}

// Bounds of the mail queue.
const (
	mailQueueSize         = 256
	mailQueuePerKind      = mailQueueSize / len(account.MailKinds) // all kinds flooding at once still fit
	mailQueuePerRecipient = 5
)

// Why a mail was not sent (the reason label of mails_not_sent_total).
const (
	mailQueueFull      = "queue_full"
	mailKindLimit      = "kind_limit"
	mailRecipientLimit = "recipient_limit"
	mailSendFailed     = "send_failed"
	mailShutdown       = "shutdown"
	mailRenderFailed   = "render_failed"
)

// newMailQueueFor returns a queue that u serves, with one sender: mails
// leave in the order they were queued, so a newer link (a second
// invitation, a resent confirmation) never arrives before the older one it
// replaced.
func newMailQueueFor(u *mailUser) *mailQueue {
	return &mailQueue{
		users:       []*mailUser{u},
		backoff:     []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second},
		stopWait:    5 * time.Second,
		byKind:      map[string]int{},
		byRecipient: map[string]int{},
		wake:        make(chan struct{}, 1),
	}
}

// mailQueues holds the mail queues in use, each under a digest of the
// mail settings it sends with (mailSettingsKey). A reload that keeps the
// settings keeps the queue, its sender and the mails in it; the queue stops
// when its last user lets go of it.
var mailQueues = caddy.NewUsagePool()

// liveMailQueues are the queues in mailQueues, oldest first. A queue whose
// last user let go (a reload changed the mail settings) hands the mails it
// still holds over to the newest one; with none left (a shutdown) they are
// reported as not sent.
var (
	liveMailQueuesMu sync.Mutex
	liveMailQueues   []*mailQueue
)

// mailLease is one app's hold on a queue of mailQueues.
type mailLease struct {
	key   string
	queue *mailQueue
	user  *mailUser
}

// mailSettingsKey digests the settings that decide where and how mails
// leave, after placeholder expansion. The templates are not among them: a
// queued mail is already rendered.
func mailSettingsKey(c MailConfig) string {
	b, _ := json.Marshal([]string{orDefault(c.Transport, "log"), c.Address, c.Username, c.Password, c.From, c.TLS})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// acquireMailQueue returns a lease on the queue kept under key, made for u
// when there is none yet. An existing queue is served by u from now on
// (its transport equals u's, as the key is the same), until u's lease is
// released.
func acquireMailQueue(key string, u *mailUser) (*mailLease, error) {
	val, loaded, err := mailQueues.LoadOrNew(key, func() (caddy.Destructor, error) {
		q := newMailQueueFor(u)
		liveMailQueuesMu.Lock()
		liveMailQueues = append(liveMailQueues, q)
		liveMailQueuesMu.Unlock()
		return q, nil
	})
	if err != nil {
		return nil, err
	}
	q := val.(*mailQueue)
	if loaded {
		q.attach(u)
	}
	return &mailLease{key: key, queue: q, user: u}, nil
}

// release gives the lease back, once: the queue stops with its last lease.
func (l *mailLease) release() error {
	if l == nil || l.key == "" {
		return nil
	}
	_, err := mailQueues.Delete(l.key)
	l.queue.detach(l.user)
	l.key = ""
	return err
}

// Destruct stops a queue of mailQueues that no app uses any more, handing
// its mails over to the newest queue still in use.
func (q *mailQueue) Destruct() error {
	liveMailQueuesMu.Lock()
	liveMailQueues = slices.DeleteFunc(liveMailQueues, func(o *mailQueue) bool { return o == q })
	var next *mailQueue
	if n := len(liveMailQueues); n > 0 {
		next = liveMailQueues[n-1]
	}
	liveMailQueuesMu.Unlock()
	q.stopAndHandOver(next)
	return nil
}

// recipientKey is the address a per-recipient bound counts.
func recipientKey(addr string) string { return strings.ToLower(strings.TrimSpace(addr)) }

// enqueue hands a mail to the sender without waiting, unless a bound
// refuses it. Mails enqueued before start wait in the queue.
func (q *mailQueue) enqueue(m mail.Message) {
	q.mu.Lock()
	if q.stopped {
		next := q.handedTo
		q.mu.Unlock()
		if next != nil {
			next.enqueue(m)
		} else {
			q.notSent(m, mailShutdown, 0, nil)
		}
		return
	}
	reason := ""
	switch {
	case len(q.pending) >= mailQueueSize:
		reason = mailQueueFull
	case q.byKind[m.Kind] >= mailQueuePerKind:
		reason = mailKindLimit
	case q.byRecipient[recipientKey(m.To)] >= mailQueuePerRecipient:
		reason = mailRecipientLimit
	default:
		q.pending = append(q.pending, m)
		q.byKind[m.Kind]++
		q.byRecipient[recipientKey(m.To)]++
	}
	q.mu.Unlock()
	if reason != "" {
		q.notSent(m, reason, 0, nil)
		return
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// notSent logs and counts a mail that will not be sent.
func (q *mailQueue) notSent(m mail.Message, reason string, attempts int, err error) {
	u := q.user()
	fields := []zap.Field{u.tag(m.To), zap.String("mail", m.Kind), zap.String("reason", reason)}
	if attempts > 0 {
		fields = append(fields, zap.Int("attempts", attempts))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	u.logger.Error("mail not sent", fields...)
	u.metrics.mailNotSent(m.Kind, reason)
}

// user returns the user whose transport, logger and metrics serve now.
func (q *mailQueue) user() *mailUser {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.users[len(q.users)-1]
}

// attach makes u the user that serves, until it is detached.
func (q *mailQueue) attach(u *mailUser) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.users = append(q.users, u)
}

// detach gives the service back to the user attached before u. The last
// user stays, so a queue that is shutting down can still log.
func (q *mailQueue) detach(u *mailUser) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.users, u); i >= 0 && len(q.users) > 1 {
		q.users = slices.Delete(q.users, i, i+1)
	}
}

// start runs the sender until stop.
func (q *mailQueue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.done = make(chan struct{})
	go q.run(ctx, q.done)
}

// stopAndHandOver ends the sender (an SMTP exchange in flight is cancelled
// and its mail stays queued) and waits for it, then queues every mail
// still queued, and every mail enqueued later, on next, oldest first,
// under next's bounds. With no next, each is reported as not sent. It waits
// at most stopWait for the sender: an SMTP server that holds the
// connection can keep a send from noticing the cancellation until its
// timeout, and a reload must not wait that long; such a mail follows the
// others when its send returns.
func (q *mailQueue) stopAndHandOver(next *mailQueue) {
	q.mu.Lock()
	cancel, done := q.cancel, q.done
	q.mu.Unlock()
	if cancel != nil {
		cancel()
		t := time.NewTimer(q.stopWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	q.mu.Lock()
	left := q.pending
	q.pending = nil
	q.stopped, q.handedTo = true, next
	q.mu.Unlock()
	for _, m := range left {
		if next != nil {
			next.enqueue(m)
		} else {
			q.notSent(m, mailShutdown, 0, nil)
		}
	}
}

// putBack returns m, whose delivery was cut short by stop, to the head of
// the queue, or passes it on as enqueue does if the stop is already over.
func (q *mailQueue) putBack(m mail.Message) {
	q.mu.Lock()
	if !q.stopped {
		q.pending = append([]mail.Message{m}, q.pending...)
		q.mu.Unlock()
		return
	}
	q.mu.Unlock()
	q.enqueue(m)
}

// next returns the oldest queued mail, if any.
func (q *mailQueue) next() (mail.Message, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return mail.Message{}, false
	}
	m := q.pending[0]
	q.pending[0] = mail.Message{}
	q.pending = q.pending[1:]
	return m, true
}

// release frees the places m held in the per-kind and per-recipient
// bounds, once its delivery is over.
func (q *mailQueue) release(m mail.Message) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.byKind[m.Kind]--; q.byKind[m.Kind] <= 0 {
		delete(q.byKind, m.Kind)
	}
	r := recipientKey(m.To)
	if q.byRecipient[r]--; q.byRecipient[r] <= 0 {
		delete(q.byRecipient, r)
	}
}

func (q *mailQueue) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		m, ok := q.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				continue
			}
		}
		if !q.deliver(ctx, m) {
			q.putBack(m)
			return
		}
		q.release(m)
		if ctx.Err() != nil {
			return
		}
	}
}

// deliver sends m, retrying after each backoff delay. It reports false,
// leaving m to the caller, when stop cut the delivery short.
func (q *mailQueue) deliver(ctx context.Context, m mail.Message) bool {
	for attempt := 0; ; attempt++ {
		u := q.user()
		sendCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := u.mailer.Send(sendCtx, m)
		cancel()
		if err == nil {
			u.metrics.mailSent(m.Kind)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt >= len(q.backoff) {
			q.notSent(m, mailSendFailed, attempt+1, err)
			return true
		}
		u.logger.Warn("sending mail failed, will retry",
			u.tag(m.To), zap.String("mail", m.Kind), zap.Int("attempt", attempt+1), zap.Error(err))
		t := time.NewTimer(q.backoff[attempt])
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}
