package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// SMTP sends mails through an SMTP server.
type SMTP struct {
	host     string
	port     int
	from     string
	username string
	password string
	tls      string
}

// SMTPConfig is an SMTP transport: the server (host:port), the From
// address, credentials (optional) and the TLS mode: "starttls" (the
// default), "implicit", "opportunistic" or "none".
type SMTPConfig struct {
	Address, From, Username, Password, TLS string
}

// NewSMTP checks the settings of an SMTP transport.
func NewSMTP(c SMTPConfig) (*SMTP, error) {
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
	tls := c.TLS
	if tls == "" {
		tls = "starttls"
	}
	return &SMTP{host: host, port: port, from: c.From, username: c.Username, password: c.Password, tls: tls}, nil
}

// Send delivers m, within ctx.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return err
	}
	if err := msg.To(m.To); err != nil {
		return err
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
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
