package caddyauth_test

import (
	"strings"
	"testing"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Passkeys in headless Chromium, with the DevTools protocol's virtual
// authenticator (a platform authenticator holding discoverable
// credentials, verifying its user, present at once): the passkeys page
// adds one, the login page signs in with it (the button, and autofill),
// the MFA page takes it as the second factor of a password login, the
// passkeys page removes it; and the refusals of a bad signature and of a
// missing user verification, shown on the page. The pages are served at
// localhost, the RP ID.

// passkeySite is the Caddyfile of the browser's passkey tests: the test
// site answers at localhost too (a secure context, the RP ID), which is
// where the browser goes.
func passkeySite(t *testing.T, base string) string {
	t.Helper()
	cf := caddyfile("store sqlite "+t.TempDir()+"/a.db", `passkeys passwordless
		passkey_rp_id localhost
		passkey_origins `+base+`
		mfa_totp_mode optional
		site_name "Example Docs"`, browserBody)
	site := "http://127.0.0.1:" + testPort + " {"
	if !strings.Contains(cf, site) {
		t.Fatalf("no site block %q in:\n%s", site, cf)
	}
	return strings.Replace(cf, site, base+", "+site, 1)
}

// authenticator gives the tab a virtual authenticator and returns its id.
func (c *chrome) authenticator() webauthn.AuthenticatorID {
	c.t.Helper()
	_, err := chromedp.Call(c.ctx, webauthn.Enable, webauthn.EnableParams{})
	c.check("enabling WebAuthn", err)
	res, err := chromedp.Call(c.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{
		Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol:                    webauthn.AuthenticatorProtocolCtap2,
			Ctap2version:                webauthn.Ctap2versionCtap21,
			Transport:                   webauthn.AuthenticatorTransportInternal,
			HasResidentKey:              true,
			HasUserVerification:         true,
			IsUserVerified:              true,
			AutomaticPresenceSimulation: true,
		}})
	c.check("adding a virtual authenticator", err)
	return res.AuthenticatorID
}

// withoutAutofill makes the tab's pages see a browser without autofill
// for passkeys (conditional mediation unavailable, as in a browser that
// lacks it) until the returned function is called. Chromium's virtual
// authenticator answers an autofill request at once, so a page that
// starts one signs in before any button is pressed.
func (c *chrome) withoutAutofill() (restore func()) {
	c.t.Helper()
	res, err := chromedp.Call(c.ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{
		Source: `if (window.PublicKeyCredential) { PublicKeyCredential.isConditionalMediationAvailable = () => Promise.resolve(false); }`,
	})
	c.check("turning autofill off", err)
	return func() {
		_, err := chromedp.Call(c.ctx, cdppage.RemoveScriptToEvaluateOnNewDocument, cdppage.RemoveScriptToEvaluateOnNewDocumentParams{Identifier: res.Identifier})
		c.check("turning autofill on", err)
	}
}

// override makes the authenticator's next answers carry a bogus
// signature, or lack user verification (both false: answer properly).
func (c *chrome) override(id webauthn.AuthenticatorID, bogusSignature, badUV bool) {
	c.t.Helper()
	_, err := chromedp.Call(c.ctx, webauthn.SetResponseOverrideBits, webauthn.SetResponseOverrideBitsParams{
		AuthenticatorID: id, IsBogusSignature: &bogusSignature, IsBadUV: &badUV})
	c.check("overriding the authenticator's answers", err)
}

// begins counts the requests the tab made to a begin endpoint.
func (c *chrome) begins(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, u := range c.urls {
		if u == c.base+path {
			n++
		}
	}
	return n
}

func TestPasskeyBrowserE2E(t *testing.T) {
	c := newChrome(t)
	c.base = "http://localhost:" + testPort
	startCaddy(t, passkeySite(t, c.base))
	email := uniqueEmail(t, "passkey-browser")
	mustCreateUser(t, email, userPass, 0)
	dev := c.authenticator()
	const want = "/docs/start?x=1"
	loginURL := "/auth/page/login?next=%2Fdocs%2Fstart%3Fx%3D1"
	signedIn := func(after string) {
		t.Helper()
		if text := c.at(want); !strings.HasPrefix(text, "page user=") {
			t.Fatalf("after %s: %q", after, text)
		}
	}
	restore := c.withoutAutofill()

	// A password sign-in, then the passkeys page, linked from the sign-out
	// page: none yet; one is added with a name.
	c.run("opening the protected page", chromedp.Navigate(c.base+want))
	c.at(loginURL)
	c.submitLogin(email, userPass)
	signedIn("the password")
	c.run("the sign-out page", chromedp.Navigate(c.base+"/auth/page/logout"))
	c.clickAndWait(`a[href="/auth/page/passkeys"]`)
	if text := c.at("/auth/page/passkeys"); !strings.Contains(text, "You have no passkeys yet.") {
		t.Fatalf("the passkeys page before: %q", text)
	}
	c.run("naming the passkey", chromedp.WaitVisible(chromedp.CSS("#passkey-button")), chromedp.SendKeys(chromedp.CSS("#name"), "Laptop"))
	c.clickAndWait("#passkey-button")
	// The account's first second factor: recovery codes come with it.
	c.run("waiting for the recovery codes", chromedp.WaitVisible(chromedp.CSS("#recovery-codes")))
	c.clickAndWait("#continue")
	text := c.at("/auth/page/passkeys?added=1")
	if !strings.Contains(text, "Passkey added.") || value(c, "the name", chromedp.Text(chromedp.CSS(".passkey-name"))) != "Laptop" || !strings.Contains(text, "Last used never") {
		t.Fatalf("the passkeys page after adding: %q", text)
	}
	c.shot("passkey-account")

	// Signed out, the login page offers the passkey: its button signs in
	// and goes on to next.
	c.logout()
	c.run("opening the protected page", chromedp.Navigate(c.base+want))
	c.at(loginURL)
	c.run("the passkey button", chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
	if got := value(c, "the button", chromedp.Text(chromedp.CSS("#passkey-button"))); got != "Sign in with a passkey" {
		t.Fatalf("button %q", got)
	}
	if got := value(c, "the e-mail field", chromedp.Evaluate[string](`document.getElementById("email").autocomplete`)); got != "username webauthn" {
		t.Fatalf("e-mail field autocomplete %q", got)
	}
	c.shot("passkey-login")
	c.clickAndWait("#passkey-button")
	signedIn("the passkey button")

	// A password sign-in now asks for the second factor: the passkey,
	// with no TOTP form (the account has none), or a recovery code.
	c.logout()
	c.run("opening the protected page", chromedp.Navigate(c.base+want))
	c.at(loginURL)
	c.submitLogin(email, userPass)
	c.at("/auth/page/mfa?next=%2Fdocs%2Fstart%3Fx%3D1")
	c.run("the passkey button", chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
	if got := value(c, "the button", chromedp.Text(chromedp.CSS("#passkey-button"))); got != "Use a passkey" {
		t.Fatalf("button %q", got)
	}
	if value(c, "the code form", chromedp.Evaluate[bool](`document.getElementById("code") !== null`)) {
		t.Fatal("the MFA page asks for a TOTP code of an account without TOTP")
	}
	c.shot("passkey-mfa")
	c.clickAndWait("#passkey-button")
	signedIn("the passkey as second factor")

	// Refusals, shown on the login page: a bogus signature, and an answer
	// that did not verify the user (passwordless sign-in requires it).
	c.logout()
	for _, bad := range []struct {
		sig, uv bool
		msg     string
	}{{true, false, "The passkey could not be verified."}, {false, true, "The passkey did not verify you (PIN or biometrics required)."}} {
		c.override(dev, bad.sig, bad.uv)
		c.run("opening the protected page", chromedp.Navigate(c.base+want))
		c.at(loginURL)
		c.run("the passkey button", chromedp.WaitVisible(chromedp.CSS("#passkey-button")))
		c.clickAndWait("#passkey-button")
		text := c.at("/auth/page/login")
		if !strings.Contains(text, bad.msg) {
			t.Fatalf("a passkey answer with bogus signature %v, no user verification %v: %q", bad.sig, bad.uv, text)
		}
		if bad.sig {
			c.shot("passkey-error")
		}
		if c.accessCookie() != "" {
			t.Fatal("a refused passkey left a session")
		}
	}
	c.override(dev, false, false)

	// Autofill: a page that supports it asks for a passkey at once
	// (conditional mediation) for the e-mail field's autofill; Chromium's
	// virtual authenticator answers it without any autofill UI, so the
	// page signs in without a click (the e-mail field's autocomplete is
	// checked above: the page may be gone before a check here).
	restore()
	before := c.begins("/auth/page/passkey/login")
	c.run("opening the protected page", chromedp.Navigate(c.base+want))
	signedIn("autofill")
	if c.begins("/auth/page/passkey/login") != before+1 {
		t.Fatalf("autofill made %d ceremonies, want 1", c.begins("/auth/page/passkey/login")-before)
	}

	// The passkey is removed; the login page then signs in by password
	// alone again.
	c.run("the passkeys page", chromedp.Navigate(c.base+"/auth/page/passkeys"))
	c.at("/auth/page/passkeys")
	if text := value(c, "the passkeys", chromedp.Text(chromedp.CSS("#passkeys"))); strings.Contains(text, "Last used never") {
		t.Fatalf("the passkey's use is not shown: %q", text)
	}
	c.run("focusing Remove", chromedp.Focus(chromedp.CSS(`button[aria-label="Remove the passkey Laptop"]`)))
	c.pressAndWait(kb.Enter)
	if text := c.at("/auth/page/passkeys?removed=1"); !strings.Contains(text, "Passkey removed.") || !strings.Contains(text, "You have no passkeys yet.") {
		t.Fatalf("after removing: %q", text)
	}
	// (The virtual authenticator still holds the passkey, and would
	// answer an autofill request with it.)
	c.withoutAutofill()
	c.logout()
	c.run("opening the protected page", chromedp.Navigate(c.base+want))
	c.at(loginURL)
	c.submitLogin(email, userPass)
	signedIn("the password, the passkey removed")

	// Nothing was fetched from anywhere but this site.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.urls {
		if !strings.HasPrefix(u, c.base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the browser fetched %s", u)
		}
	}
}
