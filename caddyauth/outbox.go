package caddyauth

import (
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Send renders the mail m and queues it (account.Outbox). A mail that
// cannot be rendered is logged and counted, never sent.
func (rl *realm) Send(m account.Mail) {
	msg, err := rl.mails[m.Kind].Render(m.To, m.Data)
	if err != nil {
		rl.logger.Error("mail not sent: rendering failed", zap.String("mail", m.Kind), zap.Error(err))
		rl.metrics.mailNotSent(m.Kind, mailRenderFailed)
		return
	}
	msg.Kind = m.Kind
	rl.mail.enqueue(msg)
}

// emailTag is how a mail's recipient appears in logs: the email_hash of
// the audit lines.
func (rl *realm) emailTag(addr string) zap.Field {
	return zap.String("email_hash", rl.svc.EmailHash(addr))
}
