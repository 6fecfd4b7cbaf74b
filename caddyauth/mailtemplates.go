package caddyauth

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
	"unicode"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

//go:embed mailtemplates
var defaultMailTemplates embed.FS

// mailTemplate is one mail's subject, text body and HTML body.
type mailTemplate struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template // nil: text only
}

// loadMailTemplates parses the built-in templates, each file replaced by
// the one of the same name in dir when dir is set and holds it.
func loadMailTemplates(dir string) (map[string]mailTemplate, error) {
	if err := web.CheckTemplateDir(dir); err != nil {
		return nil, fmt.Errorf("mail %v", err)
	}
	read := func(name string) (string, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return string(b), nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("mail templates: %v", err)
			}
		}
		b, err := defaultMailTemplates.ReadFile("mailtemplates/" + name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return string(b), err
	}
	out := map[string]mailTemplate{}
	for _, name := range account.MailKinds {
		var t mailTemplate
		src, err := read(name + ".subject.txt")
		if err != nil {
			return nil, err
		}
		if t.subject, err = texttemplate.New(name + ".subject.txt").Option("missingkey=error").Parse(src); err != nil {
			return nil, fmt.Errorf("mail templates: %v", err)
		}
		if src, err = read(name + ".txt"); err != nil {
			return nil, err
		}
		if t.text, err = texttemplate.New(name + ".txt").Option("missingkey=error").Parse(src); err != nil {
			return nil, fmt.Errorf("mail templates: %v", err)
		}
		if src, err = read(name + ".html"); err != nil {
			return nil, err
		}
		if strings.TrimSpace(src) != "" {
			if t.html, err = htmltemplate.New(name + ".html").Option("missingkey=error").Parse(src); err != nil {
				return nil, fmt.Errorf("mail templates: %v", err)
			}
		}
		// Render once with sample data, so a template that cannot
		// execute stops the start rather than a mail.
		if _, err := t.render("user@example.com", account.MailData{SiteName: "Example", Email: "user@example.com", Link: "https://example.com/", Expires: "1 hour"}); err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// render builds the mail to `to`. The subject is folded to one line with
// control characters removed, so no template or value can add a header.
func (t mailTemplate) render(to string, data account.MailData) (mailMessage, error) {
	if strings.ContainsAny(to, "\r\n") {
		return mailMessage{}, errors.New("mail recipient contains a line break")
	}
	var subj, text, html bytes.Buffer
	if err := t.subject.Execute(&subj, data); err != nil {
		return mailMessage{}, fmt.Errorf("mail templates: %v", err)
	}
	if err := t.text.Execute(&text, data); err != nil {
		return mailMessage{}, fmt.Errorf("mail templates: %v", err)
	}
	if t.html != nil {
		if err := t.html.Execute(&html, data); err != nil {
			return mailMessage{}, fmt.Errorf("mail templates: %v", err)
		}
	}
	return mailMessage{to: to, subject: headerValue(subj.String()), text: text.String(), html: html.String()}, nil
}

// headerValue makes s safe as a one-line header value: control characters
// (CR and LF included) become spaces, runs of spaces collapse, and the
// result is trimmed.
func headerValue(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// Send renders the mail m and queues it (account.Outbox). A mail that
// cannot be rendered is logged and counted, never sent.
func (rl *realm) Send(m account.Mail) {
	msg, err := rl.mails[m.Kind].render(m.To, m.Data)
	if err != nil {
		rl.logger.Error("mail not sent: rendering failed", zap.String("mail", m.Kind), zap.Error(err))
		rl.metrics.mailNotSent(m.Kind, mailRenderFailed)
		return
	}
	msg.kind = m.Kind
	rl.mail.enqueue(msg)
}

// emailTag is how a mail's recipient appears in logs: the email_hash of
// the audit lines.
func (rl *realm) emailTag(addr string) zap.Field {
	return zap.String("email_hash", rl.svc.EmailHash(addr))
}
