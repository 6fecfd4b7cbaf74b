package web

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// SocialProvider is a configured identity provider as clients see it:
// never its secret.
type SocialProvider struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	ClientID string `json:"client_id"`
}

// socialAPI is the reference's social endpoints under {prefix}/social/.
type socialAPI struct{ *Handler }

// providers answers GET {prefix}/social/providers/, the reference's
// list of the providers a client may sign in with.
func (h socialAPI) providers(w http.ResponseWriter, r *http.Request) error {
	list := h.cfg.SocialProviders
	if list == nil {
		list = []SocialProvider{}
	}
	return writeJSON(w, http.StatusOK, list)
}

// socialAction is one per-provider endpoint: its methods and the
// function answering it for the provider named in the path.
type socialAction struct {
	methods []string
	serve   func(h socialAPI, w http.ResponseWriter, r *http.Request, provider string) error
}

// socialActions are the per-provider endpoints,
// {prefix}/social/<provider>/<action>/, by action.
var socialActions = map[string]socialAction{
	"token":         {[]string{http.MethodPost}, socialAPI.credential},
	"code":          {[]string{http.MethodPost}, socialAPI.credential},
	"connect/token": {[]string{http.MethodPost}, socialAPI.credential},
	"connect/code":  {[]string{http.MethodPost}, socialAPI.credential},
	// The browser's flow (socialpages.go).
	"login":    {[]string{http.MethodGet}, socialAPI.startPage},
	"callback": {[]string{http.MethodGet, http.MethodPost}, socialAPI.callbackPage},
}

// provider answers every path {prefix}/social/<provider>/<action>/.
func (h socialAPI) provider(w http.ResponseWriter, r *http.Request) error {
	rest := strings.Trim(h.pathParam(r, "/social/"), "/")
	provider, action, _ := strings.Cut(rest, "/")
	a, ok := socialActions[action]
	if !ok {
		return errDetail(http.StatusNotFound, "Not found.")
	}
	if !allowed(w, r, a.methods) {
		return errDetail(http.StatusMethodNotAllowed, `Method "`+r.Method+`" not allowed.`)
	}
	return a.serve(h, w, r, provider)
}

// credential answers the token and code flows, and their connect forms:
// POST {prefix}/social/<provider>/[connect/]token|code/.
func (h socialAPI) credential(w http.ResponseWriter, r *http.Request, provider string) error {
	action := strings.Trim(h.pathParam(r, "/social/"+provider+"/"), "/")
	connect := strings.HasPrefix(action, "connect/")
	code := strings.HasSuffix(action, "code")
	f := readForm(w, r)
	in := account.SocialCredential{ClientID: f.Str("client_id", false, true)}
	if code {
		in.Code = f.Str("code", true, true)
		in.CallbackURL = f.Str("callback_url", true, true)
		in.CodeVerifier = f.Str("code_verifier", false, true)
	} else {
		in.IDToken = f.Str("id_token", false, true)
		in.AccessToken = f.Str("access_token", false, true)
	}
	if connect {
		in.Password = f.password("password", false)
	}
	in.Form = f.core()
	if connect {
		link, err := h.svc.Social.Connect(r.Context(), h.origin(r), bearerToken(r), provider, in, code)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, linkJSON(link))
	}
	step, err := h.svc.Social.SignIn(r.Context(), h.origin(r), provider, in, code)
	if err != nil {
		return err
	}
	return h.writeStep(w, http.StatusOK, step, nil)
}

// allowed reports whether r's method is one of methods, setting Allow
// when it is not.
func allowed(w http.ResponseWriter, r *http.Request, methods []string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(append(methods, http.MethodOptions), ", "))
	return false
}

// linkJSON is a link as the reference shows it: never the provider's
// profile.
func linkJSON(l account.SocialLink) map[string]any {
	var last any
	if !l.LastLogin.IsZero() {
		last = l.LastLogin.UTC().Format(drfTime)
	}
	return map[string]any{
		"id":          l.ID,
		"provider":    l.Provider,
		"uid":         l.UID,
		"last_login":  last,
		"date_joined": l.DateJoined.UTC().Format(drfTime),
	}
}

// accounts answers GET {prefix}/social/accounts/: the caller's links.
func (h socialAPI) accounts(w http.ResponseWriter, r *http.Request) error {
	links, err := h.svc.Social.Accounts(r.Context(), bearerToken(r))
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(links))
	for _, l := range links {
		out = append(out, linkJSON(l))
	}
	return writeJSON(w, http.StatusOK, out)
}

// disconnect answers DELETE {prefix}/social/accounts/<id>/.
func (h socialAPI) disconnect(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(strings.Trim(h.pathParam(r, "/social/accounts/"), "/"), 10, 64)
	if err != nil || id <= 0 {
		return errDetail(http.StatusNotFound, "Not found.")
	}
	if err := h.svc.Social.Disconnect(r.Context(), h.origin(r), bearerToken(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
