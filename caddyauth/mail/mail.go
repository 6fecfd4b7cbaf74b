// Package mail renders mails from templates and sends them over SMTP: the
// built-in templates (replaceable file by file), the one-line subject that
// no value can break, and an SMTP sender with its TLS modes.
package mail

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
)

// Message is one rendered mail; Kind is its template name.
type Message struct {
	Kind, To, Subject, Text, HTML string
}

//go:embed templates
var builtIn embed.FS

// Template is one mail's subject, text body and HTML body.
type Template struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template // nil: text only
}

// Load parses the built-in templates of the mails kinds (for each,
// `<kind>.subject.txt`, `<kind>.txt` and optionally `<kind>.html`), each
// file replaced by the one of the same name in dir when dir is set and
// holds it. Each is rendered once with sample, the data its mails are
// rendered with, so a template that cannot execute (a field the data
// lacks) stops the start rather than a mail.
func Load(dir string, kinds []string, sample any) (map[string]Template, error) {
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
		b, err := builtIn.ReadFile("templates/" + name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return string(b), err
	}
	out := map[string]Template{}
	for _, name := range kinds {
		var t Template
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
		if _, err := t.Render("user@example.com", sample); err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// Render builds the mail to `to`. The subject is folded to one line with
// control characters removed, so no template or value can add a header.
func (t Template) Render(to string, data any) (Message, error) {
	if strings.ContainsAny(to, "\r\n") {
		return Message{}, errors.New("mail recipient contains a line break")
	}
	var subj, text, html bytes.Buffer
	if err := t.subject.Execute(&subj, data); err != nil {
		return Message{}, fmt.Errorf("mail templates: %v", err)
	}
	if err := t.text.Execute(&text, data); err != nil {
		return Message{}, fmt.Errorf("mail templates: %v", err)
	}
	if t.html != nil {
		if err := t.html.Execute(&html, data); err != nil {
			return Message{}, fmt.Errorf("mail templates: %v", err)
		}
	}
	return Message{To: to, Subject: headerValue(subj.String()), Text: text.String(), HTML: html.String()}, nil
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
