package web

import (
	"net/http"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// tokensAPI is the caller's personal access tokens: POST {prefix}/tokens/
// makes one (its secret is answered this once), GET lists them without
// their secrets, DELETE {prefix}/tokens/<id>/ revokes one. All of them
// want an access token (a JWT): a personal token makes no more tokens.
type tokensAPI struct{ *Handler }

// personalTokenJSON is a token as its owner lists it.
func personalTokenJSON(p account.PersonalToken) map[string]any {
	var last any
	if !p.LastUsed.IsZero() {
		last = p.LastUsed.UTC().Format(drfTime)
	}
	return map[string]any{
		"id":        p.ID,
		"name":      p.Name,
		"role":      p.Role,
		"created":   p.Created.UTC().Format(drfTime),
		"expires":   p.Expires.UTC().Format(drfTime),
		"last_used": last,
	}
}

// tokens answers GET (the list, oldest first) and POST {prefix}/tokens/.
func (h tokensAPI) tokens(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodPost {
		return h.create(w, r)
	}
	list, err := h.svc.PersonalTokens.List(r.Context(), bearerToken(r))
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(list))
	for _, p := range list {
		out = append(out, personalTokenJSON(p))
	}
	return writeJSON(w, http.StatusOK, out)
}

// create answers POST {prefix}/tokens/ with 201 and the token.
func (h tokensAPI) create(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.TokenRequest{Access: bearerToken(r), Password: f.password("password", false), Name: f.Str("name", true, true)}
	f.MaxLen("name", in.Name, 100)
	in.ExpiresInDays, _ = f.Integer("expires_in_days", true)
	if role, ok := f.Integer("role", false); ok {
		in.Role = &role
	}
	in.Form = f.core()
	tok, err := h.svc.PersonalTokens.Create(r.Context(), h.origin(r), in)
	if err != nil {
		return err
	}
	body := personalTokenJSON(tok.PersonalToken)
	delete(body, "last_used")
	body["token"] = tok.Token
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, body)
}

// revoke answers DELETE {prefix}/tokens/<id>/ with 204.
func (h tokensAPI) revoke(w http.ResponseWriter, r *http.Request) error {
	id := strings.Trim(h.pathParam(r, "/tokens/"), "/")
	if err := h.svc.PersonalTokens.Revoke(r.Context(), h.origin(r), bearerToken(r), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
