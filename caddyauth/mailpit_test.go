package caddyauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// The mail tests read what the server sent from a real SMTP sink,
// mailpit, through its HTTP API. JWT_ALLAUTH_TEST_MAILPIT names a running
// one as "<smtp host:port>,<http base URL>"; without it, TestMain starts
// the mailpit binary found on PATH (or in GOPATH/bin) on free loopback
// ports and stops it at the end. When neither works, the mail tests fail
// with the reason; they are never skipped.
const mailpitEnv = "JWT_ALLAUTH_TEST_MAILPIT"

var mailpit struct {
	smtp, api string
	err       error
}

// TestMain starts what the end-to-end tests share (mailpit, Caddy's
// storage) and removes what they built (the Caddy binary of the multi-node
// tests).
func TestMain(m *testing.M) {
	// Caddy's default storage, where the generated keys live, is a
	// directory of this run, not the data directory of the user running it.
	storage, err := os.MkdirTemp("", "caddy-jwt-allauth-storage-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddy.DefaultStorage.Path = storage
	stop := setupMailpit()
	code := m.Run()
	stop()
	removeCaddyBuild()
	os.RemoveAll(storage)
	os.Exit(code)
}

func setupMailpit() (stop func()) {
	stop = func() {}
	if v := os.Getenv(mailpitEnv); v != "" {
		smtp, api, ok := strings.Cut(v, ",")
		if !ok {
			mailpit.err = fmt.Errorf("%s=%q: want \"<smtp host:port>,<http base URL>\"", mailpitEnv, v)
			return stop
		}
		mailpit.smtp, mailpit.api = strings.TrimSpace(smtp), strings.TrimRight(strings.TrimSpace(api), "/")
		mailpit.err = waitMailpit(mailpit.api, 10*time.Second)
		return stop
	}
	bin, err := exec.LookPath("mailpit")
	if err != nil {
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			home, _ := os.UserHomeDir()
			gopath = filepath.Join(home, "go")
		}
		bin = filepath.Join(gopath, "bin", "mailpit")
		if _, err := os.Stat(bin); err != nil {
			mailpit.err = fmt.Errorf("no mailpit: set %s or install it (go install github.com/axllent/mailpit@v1.33.1)", mailpitEnv)
			return stop
		}
	}
	dir, err := os.MkdirTemp("", "mailpit")
	if err != nil {
		mailpit.err = err
		return stop
	}
	smtpAddr, apiAddr := "127.0.0.1:"+freePort(), "127.0.0.1:"+freePort()
	cmd := exec.Command(bin, "--smtp", smtpAddr, "--listen", apiAddr,
		"--database", filepath.Join(dir, "mailpit.db"),
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure",
		"--disable-version-check", "--quiet")
	if err := cmd.Start(); err != nil {
		mailpit.err = fmt.Errorf("starting %s: %v", bin, err)
		return stop
	}
	mailpit.smtp, mailpit.api = smtpAddr, "http://"+apiAddr
	mailpit.err = waitMailpit(mailpit.api, 15*time.Second)
	return func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
}

func waitMailpit(api string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		res, err := http.Get(api + "/api/v1/info")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mailpit API at %s did not answer: %v", api, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mailOptions is the jwt_allauth `mail` line sending to mailpit; the test
// fails when there is no mailpit.
func mailOptions(t *testing.T) string {
	t.Helper()
	if mailpit.err != nil {
		t.Fatalf("this test needs mailpit: %v", mailpit.err)
	}
	return fmt.Sprintf("mail smtp %s {\n\t\t\tfrom \"Test site <no-reply@example.com>\"\n\t\t\ttls none\n\t\t}", mailpit.smtp)
}

// mailMsg is one message as mailpit's API gives it.
type mailMsg struct {
	ID      string
	Subject string
	Text    string
	HTML    string
	To      []struct{ Address string }
}

// mailsTo lists the messages mailpit holds for an address, newest first.
func mailsTo(t *testing.T, addr string) []mailMsg {
	t.Helper()
	res, err := http.Get(mailpit.api + "/api/v1/search?query=" + url.QueryEscape(`to:"`+addr+`"`))
	if err != nil {
		t.Fatalf("mailpit search: %v", err)
	}
	defer res.Body.Close()
	var list struct{ Messages []mailMsg }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		t.Fatalf("mailpit search: %v", err)
	}
	// The search matches substrings; keep exact recipients only.
	var out []mailMsg
	for _, m := range list.Messages {
		for _, to := range m.To {
			if strings.EqualFold(to.Address, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// waitMails waits until mailpit holds n messages for addr and returns the
// newest in full.
func waitMails(t *testing.T, addr string, n int) mailMsg {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		list := mailsTo(t, addr)
		if len(list) >= n {
			if len(list) > n {
				t.Fatalf("%d mails to %s, want %d", len(list), addr, n)
			}
			return fullMail(t, list[0].ID)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mails to %s after 20s, want %d", len(list), addr, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fullMail fetches one message from mailpit in full.
func fullMail(t *testing.T, id string) mailMsg {
	t.Helper()
	res, err := http.Get(mailpit.api + "/api/v1/message/" + id)
	if err != nil {
		t.Fatalf("mailpit message: %v", err)
	}
	defer res.Body.Close()
	var m mailMsg
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("mailpit message: %v", err)
	}
	return m
}

// noMoreMails checks that addr still has n messages a moment later.
func noMoreMails(t *testing.T, addr string, n int) {
	t.Helper()
	time.Sleep(700 * time.Millisecond)
	if got := len(mailsTo(t, addr)); got != n {
		t.Fatalf("%d mails to %s, want %d", got, addr, n)
	}
}

var linkRE = regexp.MustCompile(`https?://[^\s"<>]+`)

// linkPath finds the link of the mail's text body starting with
// testBase+prefix and returns its path.
func linkPath(t *testing.T, m mailMsg, prefix string) string {
	t.Helper()
	for _, l := range linkRE.FindAllString(m.Text, -1) {
		if strings.HasPrefix(l, testBase+prefix) {
			return strings.TrimPrefix(l, testBase)
		}
	}
	t.Fatalf("no link to %s%s in mail %q:\n%s", testBase, prefix, m.Subject, m.Text)
	return ""
}

// uniqueEmail is an address no other test (or run) uses, so tests sharing
// a mailpit never see each other's mails.
func uniqueEmail(t *testing.T, name string) string {
	return name + "-" + randomHex(t, 5) + "@example.com"
}
