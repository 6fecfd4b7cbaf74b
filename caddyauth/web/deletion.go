package web

import (
	"net/http"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// deletionAPI is DELETE {prefix}/user/: the caller deletes their own
// account (account.Users.Delete says what it asks for).
type deletionAPI struct{ *Handler }

// delete answers DELETE {prefix}/user/ with 204 once the account is gone,
// and clears the refresh cookie, whose session died with it.
func (h deletionAPI) delete(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.Deletion{Password: f.password("password", false), Code: f.Str("code", false, true)}
	in.Form = f.core()
	if err := h.svc.Users.Delete(r.Context(), h.origin(r), bearerToken(r), in); err != nil {
		return err
	}
	h.clearRefreshCookie(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
