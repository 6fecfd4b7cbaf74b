package caddyauth_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// The owner's list of sessions (GET {prefix}/sessions/), remote sign-out
// (DELETE {prefix}/sessions/<id>/) and the sessions page, against a real
// Caddy on each store.

const (
	chromeMacUA  = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	safariIOSUA  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	firefoxWinUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0"
)

// loginAs logs in with a User-Agent header and returns the access token
// and the refresh token.
func (s *site) loginAs(ua, email, password string) (access, refresh string) {
	s.t.Helper()
	r := s.post("/auth/login/", map[string]string{"email": email, "password": password}, "User-Agent: "+ua).expect(s.t, 200)
	c, ok := r.cookie("refresh_token")
	if !ok {
		s.t.Fatalf("login set no refresh cookie: %v", r.header)
	}
	return r.str("access"), c.Value
}

// sessions lists the sessions of access's owner, each as its JSON
// object.
func (s *site) sessions(access string) []map[string]any {
	s.t.Helper()
	r := s.get("/auth/sessions/", bearer(access)).expect(s.t, 200)
	if r.list == nil && string(r.raw) != "[]" {
		s.t.Fatalf("not a list: %s", r.raw)
	}
	var out []map[string]any
	for _, v := range r.list {
		out = append(out, v.(map[string]any))
	}
	return out
}

// microsTime is how the JSON writes times.
var microsTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestMySessionsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "session_check", defaultBody))
		mustCreateUser(t, userEmail, userPass, 0)
		mustCreateUser(t, "other@world.com", userPass, 0)
		laptop, laptopRefresh := s.loginAs(chromeMacUA, userEmail, userPass)
		advance(t, time.Minute)
		phone, phoneRefresh := s.loginAs(safariIOSUA, userEmail, userPass)
		other, _ := s.loginAs(firefoxWinUA, "other@world.com", userPass)

		s.get("/auth/sessions/").expect(t, 401)
		s.get("/auth/sessions/", bearer("garbage")).expect(t, 401)
		list := s.sessions(laptop)
		if len(list) != 2 {
			t.Fatalf("sessions: %v", list)
		}
		p, l := list[0], list[1] // the most recently used first
		want := map[string]any{"ip": "127.0.0.1", "user_agent": safariIOSUA, "browser": "Safari 17", "os": "iOS 17.5", "device": "mobile", "current": false}
		for k, v := range want {
			if p[k] != v {
				t.Fatalf("the phone's session: %s = %v, want %v (%v)", k, p[k], v, p)
			}
		}
		want = map[string]any{"ip": "127.0.0.1", "user_agent": chromeMacUA, "browser": "Chrome 126", "os": "macOS", "device": "desktop", "current": true}
		for k, v := range want {
			if l[k] != v {
				t.Fatalf("the laptop's session: %s = %v, want %v (%v)", k, l[k], v, l)
			}
		}
		if len(p) != 9 || len(l) != 9 {
			t.Fatalf("fields: %v", l)
		}
		session := claims(t, laptop)["session"].(string)
		for _, e := range list {
			id, _ := e["id"].(string)
			if len(id) != 32 || strings.Contains(id, session) || strings.Contains(phoneRefresh, id) {
				t.Fatalf("id %q is not opaque", id)
			}
			for _, k := range []string{"created", "last_used"} {
				if v, _ := e[k].(string); !microsTime.MatchString(v) {
					t.Fatalf("%s = %q", k, v)
				}
			}
		}
		phoneID, laptopID := p["id"].(string), l["id"].(string)
		if mine := s.sessions(phone); len(mine) != 2 || mine[0]["current"] != true || mine[0]["id"] != phoneID {
			t.Fatalf("the phone's own list: %v", mine)
		}

		// A refresh from another client moves last_used and keeps what
		// the sign-in recorded.
		advance(t, time.Minute)
		r := s.post("/auth/refresh/", nil, refreshCookie(laptopRefresh), "User-Agent: curl/8.5.0").expect(t, 200)
		laptop = r.str("access")
		if c, ok := r.cookie("refresh_token"); ok {
			laptopRefresh = c.Value
		}
		list = s.sessions(laptop)
		if list[0]["id"] != laptopID || list[0]["user_agent"] != chromeMacUA || list[0]["created"] != l["created"] || list[0]["last_used"] == l["last_used"] {
			t.Fatalf("after a refresh: %v (before: %v)", list[0], l)
		}

		// Another user's session is not found, and lives on.
		r = s.req("DELETE", "/auth/sessions/"+phoneID+"/", nil, bearer(other)).expect(t, 404)
		if r.str("detail") != "Not found." {
			t.Fatalf("another user's id: %s", r.raw)
		}
		s.req("DELETE", "/auth/sessions/"+strings.Repeat("0", 32)+"/", nil, bearer(laptop)).expect(t, 404)
		s.req("DELETE", "/auth/sessions/"+phoneID+"/", nil).expect(t, 401)
		s.get("/auth/user/", bearer(phone)).expect(t, 200)

		// The laptop signs the phone out: its refresh token dies at once,
		// its access token (session_check) once the cache has passed.
		r = s.req("DELETE", "/auth/sessions/"+phoneID+"/", nil, bearer(laptop)).expect(t, 204)
		if len(r.raw) != 0 {
			t.Fatalf("204 with a body: %s", r.raw)
		}
		s.post("/auth/refresh/", nil, refreshCookie(phoneRefresh)).expect(t, 401)
		advance(t, 3*time.Second)
		if r = s.get("/auth/user/", bearer(phone)).expect(t, 401); r.str("detail") != "Session is no longer active." {
			t.Fatalf("the phone's access token: %s", r.raw)
		}
		s.get("/auth/user/", bearer(laptop)).expect(t, 200)
		if list = s.sessions(laptop); len(list) != 1 || list[0]["id"] != laptopID {
			t.Fatalf("after signing the phone out: %v", list)
		}
		s.req("DELETE", "/auth/sessions/"+phoneID, nil, bearer(laptop)).expect(t, 404)
		s.get("/auth/sessions/", bearer(phone)).expect(t, 401)

		// Methods.
		s.post("/auth/sessions/", nil, bearer(laptop)).expect(t, 405)
		s.get("/auth/sessions/"+laptopID+"/", bearer(laptop)).expect(t, 405)
		s.req("DELETE", "/auth/sessions/", nil, bearer(laptop)).expect(t, 405)

		// Its own session: signed out as by a logout.
		s.req("DELETE", "/auth/sessions/"+laptopID+"/", nil, bearer(laptop)).expect(t, 204)
		s.post("/auth/refresh/", nil, refreshCookie(laptopRefresh)).expect(t, 401)
		s.get("/auth/sessions/", bearer(laptop)).expect(t, 401)
	})
}

func TestMySessionsWithoutUserAgentE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "record_user_agent off", defaultBody))
		u := mustCreateUser(t, userEmail, userPass, 0)
		access, refresh := s.loginAs(chromeMacUA, userEmail, userPass)
		s.post("/auth/refresh/", nil, refreshCookie(refresh), "User-Agent: "+firefoxWinUA).expect(t, 200)
		list := s.sessions(access)
		if len(list) != 1 {
			t.Fatalf("sessions: %v", list)
		}
		for _, k := range []string{"user_agent", "browser", "os", "device"} {
			if list[0][k] != "" {
				t.Fatalf("%s = %v with record_user_agent off", k, list[0][k])
			}
		}
		if list[0]["ip"] != "127.0.0.1" || list[0]["current"] != true {
			t.Fatalf("session: %v", list[0])
		}
		rows, err := activeStore(t).UserRefreshTokens(t.Context(), u.ID, time.Now())
		if err != nil || len(rows) != 1 || rows[0].UserAgent != "" {
			t.Fatalf("stored: %+v, %v", rows, err)
		}
	})
}

func TestMySessionsPageE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", browserBody))
		mustCreateUser(t, userEmail, userPass, 0)
		_, phoneRefresh := s.loginAs(safariIOSUA, userEmail, userPass)

		// Signed out: the page sends the browser to sign in, and back.
		b := newFormBrowser(t)
		p := b.get("/auth/page/sessions").expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/login?next=%2Fauth%2Fpage%2Fsessions" {
			t.Fatalf("signed out: %q", p.location())
		}
		p = b.loginForm("/auth/page/sessions", userEmail, userPass).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/sessions" {
			t.Fatalf("after signing in: %q", p.location())
		}
		p = b.get("/auth/page/sessions").expect(t, 200)
		if p.header.Get("Content-Security-Policy") == "" || strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") {
			t.Fatalf("the page's CSP or markup:\n%v\n%s", p.header, p.body)
		}
		for _, want := range []string{"Safari 17 on iOS 17.5", "Phone", "This browser", "Go-http-client 1", "127.0.0.1"} {
			if !strings.Contains(p.body, want) {
				t.Fatalf("the page lacks %q:\n%s", want, p.body)
			}
		}
		ids := regexp.MustCompile(`name="session" value="([0-9a-f]{32})"`).FindAllStringSubmatch(p.body, -1)
		if len(ids) != 2 {
			t.Fatalf("session forms: %q", ids)
		}
		phoneID, ownID := ids[1][1], ids[0][1] // this browser's session is the most recent
		if !strings.Contains(p.body[:strings.Index(p.body, ownID)], "This browser") {
			t.Fatalf("the first session is not marked as this browser's:\n%s", p.body)
		}

		// A forged form changes nothing.
		attacker := newFormBrowser(t)
		foreign := attacker.get("/auth/page/login").expect(t, 200).csrf(t)
		refuseForged(t, b, foreign, "/auth/page/sessions", p.csrf(t), url.Values{"session": {phoneID}})
		c, ok := s.post("/auth/refresh/", nil, refreshCookie(phoneRefresh)).expect(t, 200).cookie("refresh_token")
		if !ok {
			t.Fatal("the phone's refresh set no cookie")
		}
		phoneRefresh = c.Value

		// Signing the phone out.
		p = b.post("/auth/page/sessions", url.Values{"csrf_token": {p.csrf(t)}, "session": {phoneID}}).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/sessions?signed_out=1" {
			t.Fatalf("after signing out the phone: %q", p.location())
		}
		s.post("/auth/refresh/", nil, refreshCookie(phoneRefresh)).expect(t, 401)
		p = b.get(p.location()).expect(t, 200)
		if !strings.Contains(p.body, "The session was signed out:") || strings.Contains(p.body, phoneID) || !strings.Contains(p.body, ownID) {
			t.Fatalf("the page after signing out the phone:\n%s", p.body)
		}
		// Again: it has ended.
		p = b.post("/auth/page/sessions", url.Values{"csrf_token": {p.csrf(t)}, "session": {phoneID}}).expect(t, http.StatusNotFound)
		if !strings.Contains(p.body, "That session has already ended.") {
			t.Fatalf("signing out an ended session:\n%s", p.body)
		}

		// Signing this browser out: its cookies go, and so does its session.
		refresh := b.cookie("/auth/", "refresh_token")
		p = b.post("/auth/page/sessions", url.Values{"csrf_token": {p.csrf(t)}, "session": {ownID}}).expect(t, http.StatusSeeOther)
		if p.location() != "/auth/page/login?logged_out=1" || b.cookie("/", "access_token") != "" || b.cookie("/auth/", "refresh_token") != "" {
			t.Fatalf("after signing this browser out: %q, cookies left", p.location())
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		b.get("/auth/page/sessions").expect(t, http.StatusSeeOther)
	})
}

// The sessions page in Chromium: reached by signing in, each session
// listed, one signed out with the keyboard alone, then this browser's.
func TestBrowserSessionsPageE2E(t *testing.T) {
	c := newChrome(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", `site_name "Example Docs"`, browserBody))
	mustCreateUser(t, userEmail, userPass, 0)
	_, phoneRefresh := s.loginAs(safariIOSUA, userEmail, userPass)
	advance(t, time.Minute)
	s.loginAs(firefoxWinUA, userEmail, userPass)
	advance(t, time.Minute)

	// The browser says what a person's Chromium says, not "Headless".
	ua := value(c, "reading the user agent", chromedp.Evaluate[string](`navigator.userAgent`))
	_, err := chromedp.Call(c.ctx, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: strings.ReplaceAll(ua, "HeadlessChrome", "Chrome")})
	c.check("setting the user agent", err)

	c.run("opening the sessions page", chromedp.Navigate(testBase+"/auth/page/sessions"))
	c.at("/auth/page/login?next=%2Fauth%2Fpage%2Fsessions")
	c.submitLogin(userEmail, userPass)
	text := c.at("/auth/page/sessions")
	for _, want := range []string{"Your sessions", "This browser", "Safari 17 on iOS 17.5", "Firefox 127 on Windows", "on Linux", "Phone", "Computer"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the sessions page lacks %q:\n%s", want, text)
		}
	}
	if n := value(c, "counting the sessions", chromedp.Evaluate[int](`document.querySelectorAll("li.session form").length`)); n != 3 {
		t.Fatalf("%d sign-out forms, want 3", n)
	}
	c.shot("15-sessions")

	// Tab to the phone's "Sign out" and press Enter.
	value(c, "starting from the top", chromedp.Evaluate[bool](`document.activeElement.blur(), true`))
	focused := ""
	for range 10 {
		c.run("pressing Tab", chromedp.KeyEvent("\t"))
		focused = value(c, "reading the focus", chromedp.Evaluate[string](`document.activeElement.getAttribute("aria-label") || document.activeElement.tagName`))
		if strings.Contains(focused, "Safari") {
			break
		}
	}
	if focused != "Sign out Safari 17 on iOS 17.5" {
		t.Fatalf("Tab never reached the phone's button (last: %q)", focused)
	}
	c.shot("16-sessions-keyboard-focus")
	c.actAndWait("pressing Enter", chromedp.KeyEvent("\r"))
	text = c.at("/auth/page/sessions?signed_out=1")
	if !strings.Contains(text, "The session was signed out:") || strings.Contains(text, "Safari 17") || !strings.Contains(text, "Firefox 127") {
		t.Fatalf("after signing the phone out:\n%s", text)
	}
	c.shot("17-sessions-signed-out")
	s.post("/auth/refresh/", nil, refreshCookie(phoneRefresh)).expect(t, 401)

	// This browser's own "Sign out" ends its session and its cookies.
	c.clickAndWait(`button[aria-label$="(this browser)"]`)
	if text := c.at("/auth/page/login?logged_out=1"); !strings.Contains(text, "You have been signed out.") {
		t.Fatalf("after signing this browser out:\n%s", text)
	}
	if c.accessCookie() != "" {
		t.Fatal("the access cookie is still there")
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, u := range c.urls {
		if !strings.HasPrefix(u, testBase+"/") {
			t.Errorf("the browser fetched %s, not from %s", u, testBase)
		}
	}
}
