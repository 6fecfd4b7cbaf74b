package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
)

// adminAPI is the administrators' API under {prefix}/admin/ (the core's
// Admin): GET admin/users/ lists users in DRF's page shape; GET, PATCH and
// DELETE admin/users/<id>/ read, change and delete one; POST
// admin/users/<id>/reset-mfa/ and admin/users/<id>/logout-all/ answer 204.
type adminAPI struct{ *Handler }

// msgWholeNumber is the message of a filter that is not an integer.
const msgWholeNumber = "Enter a whole number."

// adminUserJSON is a user as the admin API lists it.
func adminUserJSON(u account.User) map[string]any {
	var last any
	if !u.LastLogin.IsZero() {
		last = u.LastLogin.UTC().Format(drfTime)
	}
	return map[string]any{
		"id":             u.ID,
		"email":          u.Email,
		"first_name":     u.FirstName,
		"last_name":      u.LastName,
		"role":           u.Role,
		"is_active":      u.IsActive,
		"email_verified": u.EmailVerified,
		"date_joined":    u.DateJoined.UTC().Format(drfTime),
		"last_login":     last,
	}
}

// adminDetailJSON is one user with its authenticators' types, passkeys,
// links and sessions.
func adminDetailJSON(d account.UserDetail) map[string]any {
	out := adminUserJSON(d.User)
	types := append([]string{}, d.Authenticators...)
	keys := make([]map[string]any, 0, len(d.Passkeys))
	for _, p := range d.Passkeys {
		keys = append(keys, passkeyJSON(p))
	}
	if len(keys) > 0 {
		types = append(types, "webauthn")
	}
	links := make([]map[string]any, 0, len(d.Links))
	for _, l := range d.Links {
		var last any
		if !l.LastLogin.IsZero() {
			last = l.LastLogin.UTC().Format(drfTime)
		}
		links = append(links, map[string]any{
			"id":         l.ID,
			"provider":   l.Provider,
			"created":    l.Created.UTC().Format(drfTime),
			"last_login": last,
		})
	}
	sessions := make([]map[string]any, 0, len(d.Sessions))
	for _, s := range d.Sessions {
		sessions = append(sessions, sessionJSON(s))
	}
	out["authenticators"] = types
	out["passkeys"] = keys
	out["social_accounts"] = links
	out["sessions"] = sessions
	return out
}

// list answers GET {prefix}/admin/users/?search=&role=&is_active=&page=.
func (h adminAPI) list(w http.ResponseWriter, r *http.Request) error {
	page, err := h.svc.Admin.Users(r.Context(), bearerToken(r), userFilterOf(r.URL.Query()))
	if err != nil {
		return err
	}
	results := make([]map[string]any, 0, len(page.Users))
	for _, u := range page.Users {
		results = append(results, adminUserJSON(u))
	}
	var next, previous any
	if page.HasNext {
		next = h.pageURL(r, page.Page+1)
	}
	if page.Page > 1 {
		previous = h.pageURL(r, page.Page-1)
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"count":    page.Count,
		"next":     next,
		"previous": previous,
		"results":  results,
	})
}

// userFilterOf reads the list's query: search, role, is_active and page.
func userFilterOf(q url.Values) account.UserFilter {
	f := account.UserFilter{EmailPrefix: q.Get("search"), Page: 1}
	if s := q.Get("role"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			f.Role = &n
		} else {
			f.Invalid.Add("role", msgWholeNumber)
		}
	}
	if s := q.Get("is_active"); s != "" {
		if v, ok := jsonform.ParseBool(s); ok {
			f.Active = &v
		} else {
			f.Invalid.Add("is_active", jsonform.MsgInvalidBool)
		}
	}
	if s := q.Get("page"); s != "" {
		// Not a number: no such page, as DRF answers (404 "Invalid page.").
		if n, err := strconv.Atoi(s); err == nil {
			f.Page = n
		} else {
			f.Page = 0
		}
	}
	return f
}

// pageURL is the absolute URL of page n of the list r asked for, its other
// parameters kept; the first page has no page parameter, as DRF writes it.
func (h adminAPI) pageURL(r *http.Request, n int) string {
	base := h.siteURL(r)
	q := r.URL.Query()
	if n > 1 {
		q.Set("page", strconv.Itoa(n))
	} else {
		q.Del("page")
	}
	u := base + r.URL.Path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// user answers the routes of one user: GET, PATCH and DELETE
// admin/users/<id>/, POST admin/users/<id>/reset-mfa/ and
// admin/users/<id>/logout-all/. A path naming no user or no action is not
// found, for an administrator only: any other caller is refused first.
func (h adminAPI) user(w http.ResponseWriter, r *http.Request) error {
	ctx, o, access := r.Context(), h.origin(r), bearerToken(r)
	idPart, action, _ := strings.Cut(strings.Trim(h.pathParam(r, "/admin/users/"), "/"), "/")
	id, err := strconv.ParseInt(idPart, 10, 64)
	allow := []string{http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodDelete}
	if action != "" {
		allow = []string{http.MethodPost}
	}
	if !slices.Contains(allow, r.Method) {
		w.Header().Set("Allow", strings.Join(append(allow, http.MethodOptions), ", "))
		return errDetail(http.StatusMethodNotAllowed, `Method "`+r.Method+`" not allowed.`)
	}
	if err != nil || id <= 0 || (action != "" && action != "reset-mfa" && action != "logout-all") {
		if err := h.svc.Admin.Authorize(ctx, access); err != nil {
			return err
		}
		return errDetail(http.StatusNotFound, "Not found.")
	}
	switch {
	case action == "reset-mfa":
		err = h.svc.Admin.ResetMFA(ctx, o, access, id)
	case action == "logout-all":
		err = h.svc.Admin.LogoutAll(ctx, o, access, id)
	case r.Method == http.MethodDelete:
		err = h.svc.Admin.Delete(ctx, o, access, id)
	case r.Method == http.MethodPatch:
		var d account.UserDetail
		if d, err = h.svc.Admin.Change(ctx, o, access, id, readUserChange(w, r)); err == nil {
			return writeJSON(w, http.StatusOK, adminDetailJSON(d))
		}
	default:
		var d account.UserDetail
		if d, err = h.svc.Admin.User(ctx, access, id); err == nil {
			return writeJSON(w, http.StatusOK, adminDetailJSON(d))
		}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// readUserChange reads the body of PATCH admin/users/<id>/: is_active,
// role, first_name and last_name, each optional.
func readUserChange(w http.ResponseWriter, r *http.Request) account.UserChange {
	f := readForm(w, r)
	var in account.UserChange
	in.Active, in.SetActive = f.Bool("is_active", false)
	in.Role, in.SetRole = f.Integer("role", false)
	if in.SetFirstName = f.Has("first_name"); in.SetFirstName {
		in.FirstName = f.Str("first_name", false, true)
	}
	if in.SetLastName = f.Has("last_name"); in.SetLastName {
		in.LastName = f.Str("last_name", false, true)
	}
	in.Form = f.core()
	return in
}
