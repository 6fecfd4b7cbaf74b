package caddyauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The admin page ({prefix}/page/admin) against a real Caddy on each
// store, and in Chromium.

func TestAdminPageE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		staff := mustCreateUser(t, "staff@world.com", userPass, 1000)
		target := mustCreateUser(t, userEmail, userPass, 0)
		mustCreateUser(t, "plain@world.com", userPass, 0)
		_, refresh := s.login(userEmail, userPass)

		// Signed out: sign in first. Role 0: refused.
		b := newFormBrowser(t)
		p := b.get("/auth/page/admin").expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/login?next=%2Fauth%2Fpage%2Fadmin" {
			t.Fatalf("signed out: %q", p.location())
		}
		plain := newFormBrowser(t)
		plain.loginForm("/", "plain@world.com", userPass).expect(t, http.StatusSeeOther)
		if p := plain.get("/auth/page/admin").expect(t, 403); !strings.Contains(p.body, "This page is for administrators.") {
			t.Fatalf("role 0:\n%s", p.body)
		}
		plain.get(fmt.Sprintf("/auth/page/admin?user=%d", target.ID)).expect(t, 403)

		b.loginForm("/auth/page/admin", staff.Email, userPass).expect(t, http.StatusSeeOther)
		p = b.get("/auth/page/admin?search=person").expect(t, 200)
		if p.header.Get("Content-Security-Policy") == "" || strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") {
			t.Fatalf("the page's CSP or markup:\n%v\n%s", p.header, p.body)
		}
		if !strings.Contains(p.body, userEmail) || strings.Contains(p.body, "plain@world.com") || !strings.Contains(p.body, "1 user<") {
			t.Fatalf("the filtered list:\n%s", p.body)
		}
		// The plain user's forms cannot post here.
		plain.post("/auth/page/admin", url.Values{"csrf_token": {plain.get("/auth/page/sessions").csrf(t)}, "user": {strconv.FormatInt(target.ID, 10)}, "action": {"deactivate"}}).expect(t, 403)

		userPage := fmt.Sprintf("/auth/page/admin?user=%d", target.ID)
		p = b.get(userPage).expect(t, 200)
		if !strings.Contains(p.body, "Active") || !strings.Contains(p.body, "<dt>Sessions</dt><dd>1</dd>") {
			t.Fatalf("the user's page:\n%s", p.body)
		}
		// A forged form changes nothing.
		attacker := newFormBrowser(t)
		foreign := attacker.get("/auth/page/login").expect(t, 200).csrf(t)
		refuseForged(t, b, foreign, "/auth/page/admin", p.csrf(t), url.Values{"user": {strconv.FormatInt(target.ID, 10)}, "action": {"deactivate"}})
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		_, refresh = s.login(userEmail, userPass)

		post := func(action string, extra ...string) page {
			f := url.Values{"csrf_token": {p.csrf(t)}, "user": {strconv.FormatInt(target.ID, 10)}, "action": {action}}
			for i := 0; i+1 < len(extra); i += 2 {
				f.Set(extra[i], extra[i+1])
			}
			return b.post("/auth/page/admin", f)
		}
		// Deactivating ends the sessions.
		if r := post("deactivate").expect(t, http.StatusSeeOther); r.location() != userPage+"&done=1" {
			t.Fatalf("after deactivating: %q", r.location())
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		p = b.get(userPage+"&done=1").expect(t, 200)
		if !strings.Contains(p.body, "Deactivated") || !strings.Contains(p.body, "Done.") {
			t.Fatalf("after deactivating:\n%s", p.body)
		}
		// One's own role stays: the page says why.
		f := url.Values{"csrf_token": {p.csrf(t)}, "user": {strconv.FormatInt(staff.ID, 10)}, "action": {"role"}, "role": {"0"}}
		if r := b.post("/auth/page/admin", f).expect(t, 400); !strings.Contains(r.body, "You cannot change your own role") {
			t.Fatalf("own role:\n%s", r.body)
		}
		post("role", "role", "900").expect(t, http.StatusSeeOther)
		post("activate").expect(t, http.StatusSeeOther)
		post("reset-mfa").expect(t, http.StatusSeeOther)
		post("logout-all").expect(t, http.StatusSeeOther)
		if r := post("delete").expect(t, http.StatusSeeOther); r.location() != "/auth/page/admin?deleted=1" {
			t.Fatalf("after deleting: %q", r.location())
		}
		b.get(userPage).expect(t, 404)
	})
}

// The admin page in Chromium: reached by signing in, a search typed and
// a user deactivated with the keyboard alone.
func TestBrowserAdminPageE2E(t *testing.T) {
	c := newChrome(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", `site_name "Example Docs"`, browserBody))
	mustCreateUser(t, "staff@world.com", userPass, 1000)
	for i := range 3 {
		mustCreateUser(t, fmt.Sprintf("member%d@world.com", i), userPass, 0)
	}
	_, refresh := s.login("member1@world.com", userPass)

	c.run("opening the admin page", chromedp.Navigate(testBase+"/auth/page/admin"))
	c.at("/auth/page/login?next=%2Fauth%2Fpage%2Fadmin")
	c.submitLogin("staff@world.com", userPass)
	text := c.at("/auth/page/admin")
	if !strings.Contains(text, "4 users") || !strings.Contains(text, "member2@world.com") {
		t.Fatalf("the admin page:\n%s", text)
	}
	c.shot("20-admin-users")

	// Type a search and press Enter.
	c.run("typing a search", chromedp.SendKeys(chromedp.CSS("#search"), "member1"))
	c.actAndWait("pressing Enter", chromedp.KeyEvent("\r"))
	text = c.at("/auth/page/admin?search=member1&role=&is_active=")
	if !strings.Contains(text, "1 user") || strings.Contains(text, "member2@world.com") {
		t.Fatalf("the search:\n%s", text)
	}
	c.clickAndWait(`table.users a`)
	text = c.at("/auth/page/admin?user=3")
	if !strings.Contains(text, "member1@world.com") || !strings.Contains(text, "Go-http-client 1 · 127.0.0.1") {
		t.Fatalf("the user's page:\n%s", text)
	}
	c.shot("21-admin-user")

	// Tab to "Deactivate" and press Enter.
	value(c, "starting from the top", chromedp.Evaluate[bool](`document.activeElement.blur(), true`))
	focused := ""
	for range 15 {
		c.run("pressing Tab", chromedp.KeyEvent("\t"))
		focused = value(c, "reading the focus", chromedp.Evaluate[string](`document.activeElement.textContent || document.activeElement.tagName`))
		if strings.HasPrefix(focused, "Deactivate") {
			break
		}
	}
	if !strings.HasPrefix(focused, "Deactivate") {
		t.Fatalf("Tab never reached Deactivate (last: %q)", focused)
	}
	c.shot("22-admin-keyboard-focus")
	c.actAndWait("pressing Enter", chromedp.KeyEvent("\r"))
	text = c.at("/auth/page/admin?user=3&done=1")
	if !strings.Contains(text, "Deactivated") || !strings.Contains(text, "Done.") {
		t.Fatalf("after deactivating:\n%s", text)
	}
	c.shot("23-admin-deactivated")
	s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.urls {
		if !strings.HasPrefix(u, testBase+"/") {
			t.Errorf("the browser fetched %s, not from %s", u, testBase)
		}
	}
}
