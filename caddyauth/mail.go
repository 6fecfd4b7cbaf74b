package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"
	"go.uber.org/zap"
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

// mailMessage is one rendered mail.
type mailMessage struct {
	to, subject, text, html string
}

// mailer sends one mail.
type mailer interface {
	send(ctx context.Context, m mailMessage) error
}

// logMailer writes mails to the log instead of sending them.
type logMailer struct {
	logger *zap.Logger
}

func (l logMailer) send(_ context.Context, m mailMessage) error {
	l.logger.Info("mail not sent (mail log is for local use only)",
		zap.String("to", m.to),
		zap.String("subject", m.subject),
		zap.String("text", m.text))
	return nil
}

// smtpMailer sends mails through an SMTP server with go-mail.
type smtpMailer struct {
	host     string
	port     int
	from     string
	username string
	password string
	tls      string
}

// newSMTPMailer checks the settings of an SMTP transport.
func newSMTPMailer(c MailConfig) (*smtpMailer, error) {
	host, portStr, err := net.SplitHostPort(c.Address)
	if err != nil || host == "" {
		return nil, fmt.Errorf("mail smtp: address must be host:port, got %q", c.Address)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("mail smtp: bad port in %q", c.Address)
	}
	if c.From == "" {
		return nil, errors.New("mail smtp: `from` is required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil || strings.ContainsAny(c.From, "\r\n") {
		return nil, fmt.Errorf("mail smtp: `from` %q is not a valid address", c.From)
	}
	if c.Password != "" && c.Username == "" {
		return nil, errors.New("mail smtp: a password needs a username")
	}
	if c.Username != "" && c.TLS == "none" {
		return nil, errors.New("mail smtp: credentials would travel in clear text with `tls none`; use starttls or implicit")
	}
	return &smtpMailer{host: host, port: port, from: c.From, username: c.Username, password: c.Password, tls: orDefault(c.TLS, "starttls")}, nil
}

func (s *smtpMailer) send(ctx context.Context, m mailMessage) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return err
	}
	if err := msg.To(m.to); err != nil {
		return err
	}
	msg.Subject(m.subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.text)
	if m.html != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.html)
	}
	opts := []gomail.Option{gomail.WithPort(s.port), gomail.WithTimeout(30 * time.Second)}
	switch s.tls {
	case "implicit":
		opts = append(opts, gomail.WithSSL())
	case "opportunistic":
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.username), gomail.WithPassword(s.password))
	}
	client, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return err
	}
	return client.DialAndSendWithContext(ctx, msg)
}

// mailQueue sends mails in the background, so a slow or failing SMTP
// server never changes an HTTP answer (no enumeration through errors or
// timing). It is bounded: when full, a mail is dropped and logged. A
// failed send is retried after each of the backoff delays.
type mailQueue struct {
	mailer  mailer
	logger  *zap.Logger
	jobs    chan mailMessage
	backoff []time.Duration
	workers int
	tag     func(addr string) zap.Field // how a recipient appears in logs

	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// mailQueueSize bounds the mails waiting to be sent.
const mailQueueSize = 256

func newMailQueue(m mailer, logger *zap.Logger, tag func(addr string) zap.Field) *mailQueue {
	return &mailQueue{
		mailer:  m,
		logger:  logger,
		tag:     tag,
		jobs:    make(chan mailMessage, mailQueueSize),
		backoff: []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second},
		// One sender: mails leave in the order they were queued, so a
		// newer link (a second invitation, a resent confirmation) never
		// arrives before the older one it replaced.
		workers: 1,
	}
}

// enqueue hands a mail to the senders without waiting. Mails enqueued
// before start wait in the queue.
func (q *mailQueue) enqueue(m mailMessage) {
	select {
	case q.jobs <- m:
	default:
		q.logger.Error("mail queue full, mail dropped", q.tag(m.to), zap.String("subject", m.subject))
	}
}

// start runs the senders until stop.
func (q *mailQueue) start() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	for range q.workers {
		q.wg.Add(1)
		go q.run(ctx)
	}
}

// stop ends the senders (an SMTP exchange in flight is cancelled) and
// waits for them. Mails still queued are dropped, and counted in the log.
func (q *mailQueue) stop() {
	q.mu.Lock()
	cancel := q.cancel
	q.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	q.wg.Wait()
	if n := len(q.jobs); n > 0 {
		q.logger.Warn("mails not sent before shutdown", zap.Int("mails", n))
	}
}

func (q *mailQueue) run(ctx context.Context) {
	defer q.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-q.jobs:
			q.deliver(ctx, m)
		}
	}
}

// deliver sends m, retrying after each backoff delay.
func (q *mailQueue) deliver(ctx context.Context, m mailMessage) {
	for attempt := 0; ; attempt++ {
		sendCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := q.mailer.send(sendCtx, m)
		cancel()
		if err == nil {
			return
		}
		if attempt >= len(q.backoff) || ctx.Err() != nil {
			q.logger.Error("sending mail failed, giving up",
				q.tag(m.to), zap.String("subject", m.subject), zap.Int("attempts", attempt+1), zap.Error(err))
			return
		}
		q.logger.Warn("sending mail failed, will retry",
			q.tag(m.to), zap.String("subject", m.subject), zap.Int("attempt", attempt+1), zap.Error(err))
		t := time.NewTimer(q.backoff[attempt])
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
