package web

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/useragent"
)

// sessionsAPI is the caller's own sessions: GET {prefix}/sessions/ lists
// them, DELETE {prefix}/sessions/<id>/ ends one, and the page
// {prefix}/page/sessions/ does both for a browser.
type sessionsAPI struct{ *Handler }

// sessionJSON is a session as GET {prefix}/sessions/ lists it.
func sessionJSON(s account.SessionInfo) map[string]any {
	return map[string]any{
		"id":         s.ID,
		"created":    s.Started.UTC().Format(drfTime),
		"last_used":  s.LastUsed.UTC().Format(drfTime),
		"ip":         s.IP,
		"user_agent": s.UserAgent,
		"browser":    s.Agent.Browser,
		"os":         s.Agent.OS,
		"device":     s.Agent.Device,
		"current":    s.Current,
	}
}

// list answers GET {prefix}/sessions/.
func (h sessionsAPI) list(w http.ResponseWriter, r *http.Request) error {
	list, err := h.svc.Sessions.List(r.Context(), bearerToken(r))
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(list))
	for _, s := range list {
		out = append(out, sessionJSON(s))
	}
	return writeJSON(w, http.StatusOK, out)
}

// revoke answers DELETE {prefix}/sessions/<id>/ with 204.
func (h sessionsAPI) revoke(w http.ResponseWriter, r *http.Request) error {
	id := strings.Trim(h.pathParam(r, "/sessions/"), "/")
	if _, err := h.svc.Sessions.Revoke(r.Context(), h.origin(r), bearerToken(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sessionView is a session as the page shows it.
type sessionView struct {
	ID, Name, Device, IP, Started, LastUsed string
	Current                                 bool
}

// pageTime is how the page writes a time.
const pageTime = "2 Jan 2006, 15:04 UTC"

// viewOf is s for the page.
func viewOf(s account.SessionInfo) sessionView {
	v := sessionView{ID: s.ID, IP: s.IP, Current: s.Current,
		Started: s.Started.UTC().Format(pageTime), LastUsed: s.LastUsed.UTC().Format(pageTime)}
	a := s.Agent
	switch {
	case a.Browser != "" && a.OS != "":
		v.Name = a.Browser + " on " + a.OS
	case a.Browser != "":
		v.Name = a.Browser
	case a.OS != "":
		v.Name = a.OS
	case s.UserAgent != "":
		v.Name = "Unknown browser"
	default:
		v.Name = "Unknown device"
	}
	v.Device = map[string]string{useragent.Desktop: "Computer", useragent.Mobile: "Phone", useragent.Tablet: "Tablet", useragent.Bot: "Automated client"}[a.Device]
	return v
}

// page is GET/POST {prefix}/page/sessions: the signed-in browser's
// sessions, each with a form that signs it out. Signing out this
// browser's own session clears its cookies and goes to the login page.
func (h sessionsAPI) page(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	self := h.cfg.Prefix + "/page/sessions"
	signIn := func() error {
		return seeOther(w, h.cfg.Prefix+"/page/login?next="+url.QueryEscape(self))
	}
	access := h.accessCookieValue(r)
	d := pageData{Title: "Your sessions"}
	if r.Method == http.MethodPost {
		current, err := h.svc.Sessions.Revoke(ctx, h.origin(r), access, r.PostForm.Get("session"))
		status, _, ok := pageRefusal(w, err)
		switch {
		case ok && status != http.StatusNotFound:
			return signIn()
		case ok:
			d.Error = "That session has already ended."
		case err != nil:
			return err
		case current:
			h.clearSession(w)
			return seeOther(w, h.cfg.Prefix+"/page/login?logged_out=1")
		default:
			return seeOther(w, self+"?signed_out=1")
		}
	}
	list, err := h.svc.Sessions.List(ctx, access)
	if account.IsRefusal(err) {
		return signIn()
	}
	if err != nil {
		return err
	}
	if r.URL.Query().Get("signed_out") != "" && d.Error == "" {
		d.Info = "The session was signed out: that device will have to sign in again."
	}
	for _, s := range list {
		d.Sessions = append(d.Sessions, viewOf(s))
	}
	status := http.StatusOK
	if d.Error != "" {
		status = http.StatusNotFound
	}
	return h.render(w, r, status, "sessions", d)
}
