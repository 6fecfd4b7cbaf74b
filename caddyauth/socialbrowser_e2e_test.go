package caddyauth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The browser's sign-in with a provider in headless Chromium: the
// login page's button, the provider's own login page (on another site),
// the return, the second factor, and the pages of a refused sign-in.

// atProvider waits until the tab shows the provider's login page.
func (c *chrome) atProvider(p *loginProvider) {
	c.t.Helper()
	c.run("the provider's login page", chromedp.WaitVisible(chromedp.CSS("#idp-email")))
	if loc := value(c, "location", chromedp.Location()); !strings.HasPrefix(loc, p.AuthorizationEndpoint()+"?") {
		c.t.Fatalf("at %s, want the provider's %s", loc, p.AuthorizationEndpoint())
	}
}

// signInAtProvider types email into the provider's login page and posts
// it.
func (c *chrome) signInAtProvider(p *loginProvider, email string) {
	c.t.Helper()
	c.atProvider(p)
	c.run("the provider's form", chromedp.SendKeys(chromedp.CSS("#idp-email"), email))
	c.clickAndWait("#idp-submit")
}

// pressAndWait presses a key and waits for the page it leads to.
func (c *chrome) pressAndWait(key string) {
	c.t.Helper()
	c.actAndWait("pressing a key", chromedp.KeyEvent(key))
}

func (c *chrome) logout() {
	c.t.Helper()
	c.run("logout page", chromedp.Navigate(c.base+"/auth/page/logout"))
	c.clickAndWait("button[type=submit]")
	c.at("/auth/page/login?logged_out=1")
}

func TestSocialBrowserE2E(t *testing.T) {
	c := newChrome(t)
	p := startLoginProvider(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", p.socialOption(t)+`
		email_verification optional
		mfa_totp_mode optional
		site_name "Example Docs"`, browserBody))
	const want = "/docs/start?x=1"
	loginURL := "/auth/page/login?next=%2Fdocs%2Fstart%3Fx%3D1"
	button := `a[href="/auth/social/company/login/?next=%2fdocs%2fstart%3fx%3d1"]`

	// The login page offers the provider: a link, reached with the
	// keyboard after the password form, and followed with Enter.
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.at(loginURL)
	if text := value(c, "the button", chromedp.Text(chromedp.CSS(button))); text != "Sign in with Company SSO" {
		t.Fatalf("button %q", text)
	}
	c.shot("social-login")
	c.run("tabbing to the button", chromedp.Focus(chromedp.CSS("button[type=submit]")), chromedp.KeyEvent(kb.Tab))
	if !value(c, "the focus", chromedp.Evaluate[bool](`document.activeElement.matches('`+button+`')`)) {
		t.Fatal("Tab after the password form does not reach the provider's button")
	}
	c.pressAndWait(kb.Enter)

	// A first sign-in: a new account, signed in, on next.
	c.atProvider(p)
	c.shot("social-provider")
	c.signInAtProvider(p, uniqueEmail(t, "social-new"))
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after the first sign-in: %q", text)
	}
	c.logout()

	// An account with a password and TOTP, reached by the address the
	// provider vouches for: the second factor first, then next.
	email := uniqueEmail(t, "social-totp")
	_, en := s.enrolledUser(email)
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.at(loginURL)
	c.clickAndWait(button)
	c.signInAtProvider(p, email)
	c.at("/auth/page/mfa?next=%2Fdocs%2Fstart%3Fx%3D1")
	c.shot("social-mfa")
	advance(t, 31*time.Second) // the activation code's time step is spent
	c.submitCode("#code", totpNow(t, en.secret))
	if text := c.at(want); !strings.HasPrefix(text, "page user=") {
		t.Fatalf("after the second factor: %q", text)
	}
	links := s.get("/auth/social/accounts/", bearer(c.accessCookie())).expect(t, 200)
	if len(links.list) != 1 || links.list[0].(map[string]any)["uid"] != loginSubject(email) {
		t.Fatalf("the account's links after the second factor: %s", links.raw)
	}

	// Back to the callback the browser already used: a page that says so.
	var used string
	c.mu.Lock()
	for _, u := range c.urls {
		if strings.HasPrefix(u, testBase+"/auth/social/company/callback/") {
			used = u
		}
	}
	c.mu.Unlock()
	c.run("the used callback", chromedp.Navigate(used))
	if text := c.at(strings.TrimPrefix(used, testBase)); !strings.Contains(text, msgAttemptInvalid) {
		t.Fatalf("a used callback: %q", text)
	}
	c.shot("social-error")

	// Cancelled at the provider: a page that says so, and the way back.
	c.logout()
	c.run("opening the protected page", chromedp.Navigate(testBase+want))
	c.at(loginURL)
	c.clickAndWait(button)
	c.atProvider(p)
	c.clickAndWait("#idp-cancel")
	text := value(c, "reading the page", chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(text, "The sign-in was cancelled at Company SSO, or Company SSO refused it.") {
		t.Fatalf("after cancelling: %q", text)
	}
	c.shot("social-denied")
	c.clickAndWait(`a[href^="/auth/page/login"]`)
	c.at("/auth/page/login?next=%2fdocs%2fstart%3fx%3d1")

	// The sign-up page offers it too.
	c.run("the sign-up page", chromedp.Navigate(testBase+"/auth/page/signup"))
	c.at("/auth/page/signup")
	if text := value(c, "the button", chromedp.Text(chromedp.CSS(`a[href^="/auth/social/company/login/"]`))); text != "Sign up with Company SSO" {
		t.Fatalf("sign-up button %q", text)
	}
	c.shot("social-signup")

	// Nothing was fetched from anywhere but this site and the provider.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.urls {
		if !strings.HasPrefix(u, testBase+"/") && !strings.HasPrefix(u, p.Addr()+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the browser fetched %s", u)
		}
	}
}
