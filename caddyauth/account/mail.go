package account

import (
	"fmt"
	"strings"
	"time"
)

// The mails the core sends, by template name.
const (
	MailEmailConfirmation = "email_confirmation"
	MailInvitation        = "invitation"
	MailAccountExists     = "account_exists"
	MailSignupPending     = "signup_pending"
	MailPasswordReset     = "password_reset"
)

// MailKinds lists every mail the core sends.
var MailKinds = [...]string{MailEmailConfirmation, MailInvitation, MailAccountExists, MailSignupPending, MailPasswordReset}

// MailData is what a mail's templates see.
type MailData struct {
	SiteName        string
	Email           string
	Link            string
	Expires         string
	ResetRequestURL string
}

// Mail is one mail to send: which one (a Mail* name), to whom, and what
// its templates see.
type Mail struct {
	Kind string
	To   string
	Data MailData
}

// Outbox takes the mails the core sends. Send must not block on delivery
// and never fails the flow: a mail that cannot be rendered or sent is the
// outbox's to log and count.
type Outbox interface {
	Send(m Mail)
}

type discardOutbox struct{}

func (discardOutbox) Send(Mail) {}

// sendMail hands the mail kind for to to the outbox, with the site's name
// and the address filled in.
func (rl *core) sendMail(o Origin, kind, to string, data MailData) {
	if data.SiteName == "" {
		data.SiteName = rl.siteName(o.Site)
	}
	data.Email = to
	rl.outbox.Send(Mail{Kind: kind, To: to, Data: data})
}

// SiteName is how mails and pages name the site at the URL site:
// `site_name`, else its host.
func (s *Service) SiteName(site string) string { return s.core.siteName(site) }

func (rl *core) siteName(site string) string {
	if rl.policy.SiteName != "" {
		return rl.policy.SiteName
	}
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(site, scheme); ok && rest != "" {
			host, _, _ := strings.Cut(rest, "/")
			return host
		}
	}
	return "our site"
}

// humanDuration words a link lifetime for a mail: "3 days", "1 hour",
// "30 minutes".
func humanDuration(d time.Duration) string {
	unit := func(n int64, word string) string {
		if n == 1 {
			return "1 " + word
		}
		return fmt.Sprintf("%d %ss", n, word)
	}
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	default:
		return unit(int64((d+time.Minute-1)/time.Minute), "minute")
	}
}
