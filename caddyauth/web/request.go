package web

import (
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
)

// maxBodyBytes bounds every JSON request body (DESIGN decision 8).
const maxBodyBytes = 64 << 10

// form is a decoded JSON request body, read field by field (jsonform);
// its field errors answer in the DRF shape.
type form struct {
	*jsonform.Form
	refused error // the body as a whole was refused; every field reads empty
}

// readForm decodes the request body: an empty body is an empty object; a
// non-empty one must be `application/json` (415), at most 64 KiB (413), and
// exactly one JSON object with nothing after it (400). A refused body
// still gives a form (with no fields) whose core() carries the refusal, so
// a flow judges it at its own point.
func readForm(w http.ResponseWriter, r *http.Request) *form {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refusedForm(errDetail(http.StatusRequestEntityTooLarge, "Request body is too large."))
		}
		return refusedForm(errDetail(http.StatusBadRequest, "Request body could not be read."))
	}
	jf, err := jsonform.Decode(body, r.Header.Get("Content-Type"))
	switch {
	case errors.Is(err, jsonform.ErrMediaType):
		return refusedForm(errDetail(http.StatusUnsupportedMediaType, err.Error()))
	case err != nil:
		return refusedForm(errDetail(http.StatusBadRequest, err.Error()))
	}
	return &form{Form: jf}
}

func refusedForm(err error) *form {
	return &form{Form: jsonform.FromStrings(func(string) (string, bool) { return "", false }), refused: err}
}

// core is the form as the core judges it: a copy of its messages, which
// the core adds its own to.
func (f *form) core() account.Form {
	return account.Form{Refused: f.refused, Invalid: maps.Clone(f.Errors())}
}

// err is the body's refusal, or its field errors as a refusal, or nil.
func (f *form) err() error {
	if f.refused != nil {
		return f.refused
	}
	return account.FieldErrors(f.Errors()).Err()
}

// password reads a password field: not trimmed, at most
// passwords.MaxLength characters.
func (f *form) password(name string, required bool) string {
	p := f.Str(name, required, false)
	f.MaxLen(name, p, passwords.MaxLength)
	return p
}

// newPassword reads new_password1 and new_password2.
func (f *form) newPassword() account.NewPassword {
	p1 := f.password("new_password1", true)
	p2 := f.password("new_password2", true)
	return account.NewPassword{Password1: p1, Password2: p2}
}

// bearerToken returns the token of an `Authorization: Bearer` header (the
// scheme is case-insensitive), or "" when there is none.
func bearerToken(r *http.Request) string {
	v := r.Header["Authorization"] // Get would canonicalize the key first
	if len(v) == 0 {
		return ""
	}
	scheme, tok, ok := strings.Cut(v[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// formOf reads a posted page form like a JSON body: each named field that
// was posted becomes a string field, so the endpoints' validation applies
// unchanged.
func formOf(vals url.Values, names ...string) *form {
	return &form{Form: jsonform.FromStrings(func(name string) (string, bool) { return vals.Get(name), vals.Has(name) }, names...)}
}
