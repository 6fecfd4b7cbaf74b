package mail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Data stands for what the core renders mails with.
type Data struct {
	SiteName, Email, Link, Expires, ResetRequestURL string
}

var sample = Data{SiteName: "Example", Email: "user@example.com", Link: "https://example.com/", Expires: "1 hour"}

var kinds = []string{"email_confirmation", "invitation", "account_exists", "signup_pending", "password_reset"}

func TestMailTemplates(t *testing.T) {
	tmpl, err := Load("", kinds, sample)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tmpl["password_reset"].Render("u@example.com", Data{SiteName: "Site\r\nBcc: evil@example.com", Link: "https://example.com/auth/x/?a=<b>", Expires: "1 hour"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(m.Subject, "\r\n") || !strings.Contains(m.Text, "https://example.com/auth/x/?a=<b>") || !strings.Contains(m.HTML, `href="https://example.com/auth/x/?a=%3cb%3e"`) {
		t.Fatalf("rendered: %+v", m)
	}
	if _, err := tmpl["invitation"].Render("u@example.com\r\nBcc: x@example.com", Data{}); err == nil {
		t.Fatal("a recipient with a line break was accepted")
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "invitation.subject.txt"), []byte("Join {{.SiteName}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "invitation.html"), []byte(""), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl, err = Load(dir, kinds, sample)
	if err != nil {
		t.Fatal(err)
	}
	m, err = tmpl["invitation"].Render("u@example.com", Data{SiteName: "Acme", Link: "https://example.com/l"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "Join Acme" || m.HTML != "" || !strings.Contains(m.Text, "https://example.com/l") {
		t.Fatalf("overridden: %+v", m)
	}
	// The "sign-up pending" note is overridden like the others.
	if err := os.WriteFile(filepath.Join(dir, "signup_pending.txt"), []byte("Pending at {{.SiteName}}."), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl, err = Load(dir, kinds, sample)
	if err != nil {
		t.Fatal(err)
	}
	m, err = tmpl["signup_pending"].Render("u@example.com", Data{SiteName: "Acme"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Text != "Pending at Acme." || !strings.Contains(m.Subject, "waiting for confirmation") || !strings.Contains(m.HTML, "forgot password") {
		t.Fatalf("overridden signup_pending: %+v", m)
	}
	if err := os.WriteFile(filepath.Join(dir, "password_reset.txt"), []byte("{{.Nope}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, kinds, sample); err == nil {
		t.Fatal("a template using an unknown field was accepted")
	}
}

func TestNewSMTP(t *testing.T) {
	if _, err := NewSMTP(SMTPConfig{Address: "smtp.example.com:25", From: "a@example.com", Username: "u", Password: "p", TLS: "none"}); err == nil {
		t.Error("credentials with tls none were accepted")
	}
	if _, err := NewSMTP(SMTPConfig{Address: "smtp.example.com:25", From: "a@example.com\r\nBcc: x@example.com"}); err == nil {
		t.Error("a From with a line break was accepted")
	}
	for _, addr := range []string{"smtp.example.com", ":25", "smtp.example.com:0", "smtp.example.com:70000"} {
		if _, err := NewSMTP(SMTPConfig{Address: addr, From: "a@example.com"}); err == nil {
			t.Errorf("address %q was accepted", addr)
		}
	}
	if _, err := NewSMTP(SMTPConfig{Address: "smtp.example.com:25", From: "a@example.com", Password: "p"}); err == nil {
		t.Error("a password without a username was accepted")
	}
	if _, err := NewSMTP(SMTPConfig{Address: "smtp.example.com:587", From: "Example <no-reply@example.com>"}); err != nil {
		t.Errorf("a valid transport: %v", err)
	}
}
