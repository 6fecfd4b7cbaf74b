package caddyauth

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
)

// maxBodyBytes bounds every JSON request body (DESIGN decision 8).
const maxBodyBytes = 64 << 10

// form is a decoded JSON request body, read field by field (jsonform);
// its field errors answer in the DRF shape.
type form struct {
	*jsonform.Form
}

// readForm decodes the request body: an empty body is an empty object; a
// non-empty one must be `application/json` (415), at most 64 KiB (413), and
// exactly one JSON object with nothing after it (400).
func readForm(w http.ResponseWriter, r *http.Request) (*form, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errDetail(http.StatusRequestEntityTooLarge, "Request body is too large.")
		}
		return nil, errDetail(http.StatusBadRequest, "Request body could not be read.")
	}
	jf, err := jsonform.Decode(body, r.Header.Get("Content-Type"))
	switch {
	case errors.Is(err, jsonform.ErrMediaType):
		return nil, errDetail(http.StatusUnsupportedMediaType, err.Error())
	case err != nil:
		return nil, errDetail(http.StatusBadRequest, err.Error())
	}
	return &form{jf}, nil
}

// err returns the collected field errors as a 400, or nil.
func (f *form) err() error {
	if errs := f.Errors(); errs != nil {
		return errFields(errs)
	}
	return nil
}

// bearerToken returns the token of an `Authorization: Bearer` header (the
// scheme is case-insensitive), or "" when there is none.
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// normalizeEmail lower-cases and trims an address, as every lookup does.
func normalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// formOf reads a posted page form like a JSON body: each named field that
// was posted becomes a string field, so the endpoints' validation applies
// unchanged.
func formOf(vals url.Values, names ...string) *form {
	return &form{jsonform.FromStrings(func(name string) (string, bool) { return vals.Get(name), vals.Has(name) }, names...)}
}
