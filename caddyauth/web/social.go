package web

import "net/http"

// SocialProvider is a configured identity provider as clients see it:
// never its secret.
type SocialProvider struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	ClientID string `json:"client_id"`
}

// socialProviders answers GET {prefix}/social/providers/, the reference's
// list of the providers a client may sign in with.
func (h *Handler) socialProviders(w http.ResponseWriter, r *http.Request) error {
	list := h.cfg.SocialProviders
	if list == nil {
		list = []SocialProvider{}
	}
	return writeJSON(w, http.StatusOK, list)
}
