package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// adminView is what the admin page shows: the list of users (with its
// filters and the links to the pages around it), or one user.
type adminView struct {
	Search, Role, Active string
	Count                int
	Users                []adminRow
	Previous, Next       string
	User                 *adminUserView
}

// adminRow is one user of the admin page.
type adminRow struct {
	ID                  int64
	Email, Name, Joined string
	Role                int
	IsActive            bool
}

// adminUserView is one user with its factors, links and sessions.
type adminUserView struct {
	adminRow
	LastLogin                 string
	Authenticators, Providers []string
	Passkeys                  []string // their names
	Sessions                  []sessionView
	EmailVerified, HasFactors bool
}

func adminRowOf(u account.User) adminRow {
	return adminRow{ID: u.ID, Email: u.Email, Name: strings.TrimSpace(u.FirstName + " " + u.LastName), Role: u.Role,
		IsActive: u.IsActive, Joined: u.DateJoined.UTC().Format(pageTime)}
}

// page is GET/POST {prefix}/page/admin: the list of users (GET, with the
// JSON list's query), one user (GET ?user=<id>), and its actions (POST
// user, action and, for a new role, role), through the same core calls as
// the admin API. A browser without a session signs in first; a user of
// another role is refused.
func (h adminAPI) page(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	self := h.cfg.Prefix + "/page/admin"
	access := h.accessCookieValue(r)
	back := self
	if r.URL.RawQuery != "" {
		back += "?" + r.URL.RawQuery
	}
	refused := func(err error) (bool, error) {
		status, msg, ok := pageRefusal(w, err)
		switch {
		case !ok:
			return err != nil, err
		case status == http.StatusUnauthorized:
			return true, seeOther(w, h.cfg.Prefix+"/page/login?next="+url.QueryEscape(back))
		case status == http.StatusForbidden && msg == account.MsgPermissionDenied:
			return true, h.messagePage(w, r, http.StatusForbidden, "Not allowed", "This page is for administrators.")
		}
		return false, nil
	}
	d := pageData{Title: "Users"}
	if r.Method == http.MethodPost {
		id, _ := strconv.ParseInt(r.PostForm.Get("user"), 10, 64)
		o := h.origin(r)
		var err error
		switch action := r.PostForm.Get("action"); action {
		case "activate", "deactivate":
			_, err = h.svc.Admin.Change(ctx, o, access, id, account.UserChange{Active: action == "activate", SetActive: true})
		case "role":
			in := account.UserChange{SetRole: true}
			var perr error
			if in.Role, perr = strconv.Atoi(r.PostForm.Get("role")); perr != nil {
				in.Invalid = account.FieldErrors{"role": {"A valid integer is required."}}
			}
			_, err = h.svc.Admin.Change(ctx, o, access, id, in)
		case "logout-all":
			err = h.svc.Admin.LogoutAll(ctx, o, access, id)
		case "reset-mfa":
			err = h.svc.Admin.ResetMFA(ctx, o, access, id)
		case "delete":
			if err = h.svc.Admin.Delete(ctx, o, access, id); err == nil {
				return seeOther(w, self+"?deleted=1")
			}
		default:
			err = h.svc.Admin.Authorize(ctx, access)
			if err == nil {
				return h.messagePage(w, r, http.StatusBadRequest, "Bad request", "The form could not be read.")
			}
		}
		if done, rerr := refused(err); done {
			return rerr
		}
		if err == nil {
			return seeOther(w, self+"?user="+strconv.FormatInt(id, 10)+"&done=1")
		}
		_, d.Error, _ = pageRefusal(w, err)
		r.URL.RawQuery = "user=" + strconv.FormatInt(id, 10)
	}
	q := r.URL.Query()
	if q.Has("user") {
		id, _ := strconv.ParseInt(q.Get("user"), 10, 64)
		u, err := h.svc.Admin.User(ctx, access, id)
		if done, rerr := refused(err); done {
			return rerr
		}
		if err != nil {
			return h.messagePage(w, r, http.StatusNotFound, "Not found", "There is no such user.")
		}
		if q.Get("done") != "" && d.Error == "" {
			d.Info = "Done."
		}
		d.Title = u.Email
		d.Admin = &adminView{User: adminUserViewOf(u)}
		status := http.StatusOK
		if d.Error != "" {
			status = http.StatusBadRequest
		}
		return h.render(w, r, status, "admin", d)
	}
	page, err := h.svc.Admin.Users(ctx, access, userFilterOf(q))
	if done, rerr := refused(err); done {
		return rerr
	}
	v := &adminView{Search: q.Get("search"), Role: q.Get("role"), Active: q.Get("is_active")}
	if err != nil {
		_, d.Error, _ = pageRefusal(w, err)
	} else {
		v.Count = page.Count
		for _, u := range page.Users {
			v.Users = append(v.Users, adminRowOf(u))
		}
		link := func(n int) string {
			p := url.Values{}
			for _, k := range []string{"search", "role", "is_active"} {
				if q.Get(k) != "" {
					p.Set(k, q.Get(k))
				}
			}
			if n > 1 {
				p.Set("page", strconv.Itoa(n))
			}
			return self + "?" + p.Encode()
		}
		if page.HasNext {
			v.Next = link(page.Page + 1)
		}
		if page.Page > 1 {
			v.Previous = link(page.Page - 1)
		}
	}
	if q.Get("deleted") != "" {
		d.Info = "The user was deleted."
	}
	d.Admin = v
	return h.render(w, r, http.StatusOK, "admin", d)
}

func adminUserViewOf(d account.UserDetail) *adminUserView {
	v := &adminUserView{adminRow: adminRowOf(d.User), EmailVerified: d.EmailVerified, Authenticators: d.Authenticators}
	v.LastLogin = "never"
	if !d.LastLogin.IsZero() {
		v.LastLogin = d.LastLogin.UTC().Format(pageTime)
	}
	for _, p := range d.Passkeys {
		v.Passkeys = append(v.Passkeys, p.Name)
	}
	for _, l := range d.Links {
		v.Providers = append(v.Providers, l.Provider)
	}
	for _, s := range d.Sessions {
		v.Sessions = append(v.Sessions, viewOf(s))
	}
	v.HasFactors = len(d.Authenticators) > 0 || len(d.Passkeys) > 0
	return v
}
