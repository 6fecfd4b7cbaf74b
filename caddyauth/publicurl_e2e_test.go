package caddyauth_test

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// withoutPublicURL drops the public_url line of a test Caddyfile and puts
// sites in place of the test site's address.
func withoutPublicURL(t *testing.T, cf, sites string) string {
	t.Helper()
	out := strings.Replace(cf, "\t\tpublic_url "+testBase+"\n", "", 1)
	out = strings.Replace(out, "\n"+testBase+" {\n", "\n"+sites+" {\n", 1)
	if strings.Contains(out, "public_url") || !strings.Contains(out, sites+" {") {
		t.Fatalf("the test Caddyfile did not take the change:\n%s", out)
	}
	return out
}

// TestPublicURLFromSiteAddressE2E: without public_url, a site block naming
// one host gives mailed links its address (here a host the requests name
// in their Host header, not the address they connect to), and the link
// works there.
func TestPublicURLFromSiteAddressE2E(t *testing.T) {
	site := "http://localhost:" + testPort
	cf := withoutPublicURL(t, caddyfile(backends()[0].store(t), mailOptions(t), defaultBody), site)
	s := startCaddy(t, cf)
	host := "Host: localhost:" + testPort
	email := uniqueEmail(t, "siteurl")
	mustCreateUser(t, email, userPass, 0)
	s.post("/auth/password/reset/", map[string]string{"email": email}, host).expect(t, 200)
	m := waitMails(t, email, 1)
	var link string
	for _, l := range linkRE.FindAllString(m.Text, -1) {
		if strings.HasPrefix(l, site+"/auth/password/reset/confirm/") {
			link = l
		}
	}
	if link == "" {
		t.Fatalf("no link to %s/auth/password/reset/confirm/ in:\n%s", site, m.Text)
	}
	if m.Subject != "Reset your password for localhost:"+testPort {
		t.Fatalf("subject %q does not name the site", m.Subject)
	}
	r := s.get(strings.TrimPrefix(link, site), host).expect(t, 302)
	if _, ok := r.cookie("password_reset_access_token"); !ok {
		t.Fatalf("the mailed link did not work: %v", r.header)
	}
}

// TestPublicURLRequiredE2E: without public_url, a site block naming two
// hosts (or none) has no one address for its links, and Caddy refuses to
// start with a message that says what to write.
func TestPublicURLRequiredE2E(t *testing.T) {
	for name, sites := range map[string]string{
		"two hosts": "http://localhost:" + testPort + ", http://127.0.0.1:" + testPort,
		"no host":   "http://:" + testPort,
	} {
		t.Run(name, func(t *testing.T) {
			cf := withoutPublicURL(t, caddyfile(backends()[0].store(t), "", defaultBody), sites)
			cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
			if err == nil {
				if err = caddy.Load(cfg, true); err == nil {
					_ = caddy.Stop()
				}
			}
			if err == nil {
				t.Fatal("Caddy started without a public address for the mailed links")
			}
			if !strings.Contains(err.Error(), "write `public_url https://auth.example.com` (the site's public address) in the global jwt_allauth block") {
				t.Fatalf("refusal %q does not say what to write", err)
			}
		})
	}
}
