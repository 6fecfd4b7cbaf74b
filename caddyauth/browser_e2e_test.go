package caddyauth_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// The browser test drives headless Chromium (Debian's `chromium`) over the
// DevTools protocol through a whole session against a real Caddy: the
// protected page, the login page, TOTP setup in required mode, the
// recovery codes, the page itself, a reload after the access token
// expired, logout, and a login with TOTP and with a recovery code. It
// writes a screenshot of each page for a person to look at.

// screenshotsEnv names the directory the screenshots go to; by default
// testdata/screenshots at the root of the repository (ignored by git).
const screenshotsEnv = "JWT_ALLAUTH_SCREENSHOTS"

// chromiumPath finds the browser, or fails the test saying how to get it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the browser tests need Chromium and none was found on PATH: install it (Debian: `apt-get install -y chromium`)")
	return ""
}

// chrome is one headless browser tab, at the site base (testBase unless
// a test says otherwise).
type chrome struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	base string
	mu   sync.Mutex
	urls []string
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.NoSandbox, // the tests may run as root
		chromedp.WindowSize(900, 760),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
	)
	dir := os.Getenv(screenshotsEnv)
	if dir == "" {
		dir = filepath.Join("..", "testdata", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &chrome{t: t, dir: dir, base: testBase}
	// Every request the tab makes, for the same-origin check.
	record := func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			c.mu.Lock()
			c.urls = append(c.urls, e.Request.URL)
			c.mu.Unlock()
		}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(record))
	// The whole session has two minutes; the timeout ends the browser.
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	c.ctx = ctx
	if _, err := chromedp.Run(ctx, chromedp.Location()); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	abs, _ := filepath.Abs(dir)
	t.Logf("screenshots in %s", abs)
	return c
}

// run performs actions, failing the test on error.
func (c *chrome) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	c.check(what, chromedp.Do(c.ctx, actions...))
}

// check fails the test on err, showing where the tab is.
func (c *chrome) check(what string, err error) {
	c.t.Helper()
	if err != nil {
		loc, _ := chromedp.Run(c.ctx, chromedp.Location())
		body, _ := chromedp.Run(c.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		c.t.Fatalf("%s: %v\nat %s:\n%s", what, err, loc, body)
	}
}

// value runs one action and returns its value.
func value[T any](c *chrome, what string, a chromedp.Action[T]) T {
	c.t.Helper()
	v, err := chromedp.Run(c.ctx, a)
	c.check(what, err)
	return v
}

// shot saves a PNG of the whole page as name.png.
func (c *chrome) shot(name string) {
	c.t.Helper()
	png := value(c, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(c.dir, name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// at waits until the tab shows wantPath (path and query) and has loaded
// it, and returns the body text.
func (c *chrome) at(wantPath string) string {
	c.t.Helper()
	var got string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		loc, err := chromedp.Run(c.ctx, chromedp.Location())
		got = strings.TrimPrefix(loc, c.base)
		if err == nil && got == wantPath {
			ready, err := chromedp.Run(c.ctx, chromedp.Evaluate[bool](`document.readyState === "complete"`))
			if err == nil && ready {
				return value(c, "reading the page", chromedp.Text(chromedp.CSS("body")))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	text, _ := chromedp.Run(c.ctx, chromedp.Text(chromedp.CSS("body")))
	c.t.Fatalf("at %s, want %s; page:\n%s", got, wantPath, text)
	return ""
}

// clickAndWait clicks sel and waits until the page it leads to has
// loaded (a mark left on the old document must be gone).
func (c *chrome) clickAndWait(sel string) {
	c.t.Helper()
	c.actAndWait("clicking "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// actAndWait runs action (a click, a key) and waits for the new page it
// leads to.
func (c *chrome) actAndWait(what string, action chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	value(c, "marking the page", chromedp.Evaluate[bool]("window.__before_click = true"))
	c.run(what, action)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		done, err := chromedp.Run(c.ctx, chromedp.Evaluate[bool](`!window.__before_click && document.readyState === "complete"`))
		if err == nil && done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("%s led to no new page", what)
}

// submitLogin fills in and posts the login form.
func (c *chrome) submitLogin(email, password string) {
	c.t.Helper()
	c.run("login form",
		chromedp.WaitVisible(chromedp.CSS("#email")),
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
	)
	c.clickAndWait("button[type=submit]")
}

// submitCode types into the code field of the current form and posts it.
func (c *chrome) submitCode(field, code string) {
	c.t.Helper()
	c.run("code form",
		chromedp.WaitVisible(chromedp.CSS(field)),
		chromedp.SendKeys(chromedp.CSS(field), code),
	)
	c.clickAndWait("button[type=submit]")
}

func (c *chrome) accessCookie() string {
	c.t.Helper()
	res, err := chromedp.Call(c.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{testBase + "/"}})
	c.check("reading cookies", err)
	for _, ck := range res.Cookies {
		if ck.Name == "access_token" {
			if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteLax {
				c.t.Fatalf("access cookie flags: %+v", ck)
			}
			return ck.Value
		}
	}
	return ""
}

func TestBrowserSessionE2E(t *testing.T) {
	c := newChrome(t)
	startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", `mfa_totp_mode required
		site_name "Example Docs"`, browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	const want = "/docs/start?x=1"
	loginURL := "/auth/page/login?next=%2Fdocs%2Fstart%3Fx%3D1"

	// A protected page sends the browser to the login page.
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.at(loginURL)
	c.shot("01-login")

	// A wrong password shows the form again.
	c.submitLogin(userEmail, "not-the-password")
	if text := c.at("/auth/page/login"); !strings.Contains(text, "Incorrect credentials") {
		t.Fatalf("wrong password page: %s", text)
	}
	c.shot("02-login-error")
	value(c, "clearing the form", chromedp.Evaluate[string](`document.getElementById("email").value = ""`))

	// Required mode: straight after the password, TOTP setup.
	c.submitLogin(userEmail, userPass)
	c.at("/auth/page/mfa-setup?next=%2Fdocs%2Fstart%3Fx%3D1")
	secret := value(c, "reading the secret", chromedp.Text(chromedp.CSS("#secret")))
	qrLoaded := value(c, "checking the QR code", chromedp.Evaluate[bool](`document.querySelector("img.qr").complete && document.querySelector("img.qr").naturalWidth > 0`))
	if !qrLoaded {
		t.Fatal("the QR code image did not load")
	}
	c.shot("03-mfa-setup")
	c.submitCode("#code", totpNow(t, strings.TrimSpace(secret)))

	// The recovery codes, once.
	c.run("waiting for the recovery codes", chromedp.WaitVisible(chromedp.CSS("#recovery-codes")))
	codes := value(c, "reading recovery codes", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#recovery-codes code")).map(e => e.textContent)`))
	if len(codes) != 10 {
		t.Fatalf("recovery codes: %q", codes)
	}
	c.shot("04-recovery-codes")
	c.clickAndWait("#continue")
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("protected page: %q", text)
	}
	c.shot("05-protected-page")

	// The access token expires; a reload goes through the refresh hop
	// and stays on the page.
	before := c.accessCookie()
	advance(t, 31*time.Minute)
	c.run("reloading", chromedp.Reload())
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after expiry: %q", text)
	}
	if after := c.accessCookie(); after == before || after == "" {
		t.Fatal("the access cookie was not renewed")
	}

	// Logout, and the page is closed again.
	c.run("logout page", chromedp.Navigate(testBase+"/auth/page/logout"))
	c.at("/auth/page/logout")
	c.shot("06-logout")
	c.clickAndWait("button[type=submit]")
	if text := c.at("/auth/page/login?logged_out=1"); !strings.Contains(text, "You have been signed out.") {
		t.Fatalf("after logout: %q", text)
	}
	c.shot("07-signed-out")
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.at(loginURL)

	// A login with TOTP now asks for the code.
	advance(t, 31*time.Second) // the setup code's time step is spent
	c.submitLogin(userEmail, userPass)
	c.at("/auth/page/mfa?next=%2Fdocs%2Fstart%3Fx%3D1")
	c.shot("08-mfa")
	c.submitCode("#code", totpNow(t, strings.TrimSpace(secret)))
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after TOTP: %q", text)
	}

	// And with a recovery code.
	c.run("logout page", chromedp.Navigate(testBase+"/auth/page/logout"))
	c.clickAndWait("button[type=submit]")
	c.at("/auth/page/login?logged_out=1")
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.submitLogin(userEmail, userPass)
	c.at("/auth/page/mfa?next=%2Fdocs%2Fstart%3Fx%3D1")
	c.clickAndWait(`a[href*="recovery=1"]`)
	c.at("/auth/page/mfa?recovery=1&next=%2fdocs%2fstart%3fx%3d1") // html/template escapes in lower case
	c.shot("09-mfa-recovery")
	c.submitCode("#recovery_code", strings.ToLower(codes[0]))
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after a recovery code: %q", text)
	}

	// The sign-up and forgot-password pages, reached by the login page's
	// links.
	c.run("logout page", chromedp.Navigate(testBase+"/auth/page/logout"))
	c.clickAndWait("button[type=submit]")
	c.at("/auth/page/login?logged_out=1")
	c.clickAndWait(`a[href^="/auth/page/signup"]`)
	c.at("/auth/page/signup?next=%2f")
	c.shot("10-signup")
	c.run("sign-up form",
		chromedp.SendKeys(chromedp.CSS("#email"), "not-an-address"),
		chromedp.SendKeys(chromedp.CSS("#first_name"), "Ada"),
		chromedp.SendKeys(chromedp.CSS("#last_name"), "Lovelace"),
		chromedp.SendKeys(chromedp.CSS("#password1"), userPass),
		chromedp.SendKeys(chromedp.CSS("#password2"), userPass),
	)
	c.clickAndWait("button[type=submit]")
	if text := c.at("/auth/page/signup"); !strings.Contains(text, "Enter a valid email address.") {
		t.Fatalf("sign-up with a bad address: %q", text)
	}
	c.shot("11-signup-errors")
	c.clickAndWait(`a[href^="/auth/page/login"]`)
	c.clickAndWait(`a[href^="/auth/page/password-reset"]`)
	c.at("/auth/page/password-reset?next=%2f")
	c.shot("12-password-reset")
	c.run("reset form", chromedp.SendKeys(chromedp.CSS("#email"), "nobody@example.com"))
	c.clickAndWait("button[type=submit]")
	if text := c.at("/auth/page/password-reset"); !strings.Contains(text, "If an account exists for this address, a reset link has been sent.") {
		t.Fatalf("after the reset request: %q", text)
	}
	c.shot("13-password-reset-sent")

	// Nothing was fetched from anywhere but this site.
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.urls) < 10 {
		t.Fatalf("only %d requests recorded: %q", len(c.urls), c.urls)
	}
	for _, u := range c.urls {
		if !strings.HasPrefix(u, testBase+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the browser fetched %s, not from %s", u, testBase)
		}
	}
}

// The page behind a mailed reset link saves the new password, then shows
// the way on through the sign-in page (before: a dead end).
func TestBrowserResetLinkE2E(t *testing.T) {
	c := newChrome(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", mailOptions(t), browserBody))
	email := uniqueEmail(t, "browser-reset")
	mustCreateUser(t, email, userPass, 0)
	s.post("/auth/password/reset/", map[string]string{"email": email}).expect(t, 200)
	link := linkPath(t, waitMails(t, email, 1), "/auth/")

	c.run("following the mailed link", chromedp.Navigate(testBase+link))
	c.run("the new password",
		chromedp.WaitVisible(chromedp.CSS("#p1")),
		chromedp.SendKeys(chromedp.CSS("#p1"), newPass),
		chromedp.SendKeys(chromedp.CSS("#p2"), newPass),
		chromedp.Click(chromedp.CSS("button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#signin a")),
	)
	if text := value(c, "reading the result", chromedp.Text(chromedp.CSS("#result"))); !strings.Contains(text, "You can now sign in with your new password.") {
		t.Fatalf("after saving: %q", text)
	}
	c.shot("14-reset-link-saved")
	// The reset opened a session (no second factor is due), so the sign-in
	// page sends the browser straight on to the site.
	c.clickAndWait("#signin a")
	if text := c.at("/"); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after the reset, the sign-in page led to: %q", text)
	}
	s.post("/auth/login/", map[string]string{"email": email, "password": newPass}).expect(t, 200)
}
