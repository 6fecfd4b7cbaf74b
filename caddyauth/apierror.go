package caddyauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"go.uber.org/zap"
)

// apiError is a 4xx answer in the shape Django REST framework gives:
// `{"detail": "...", "code": "..."}` or `{"field": ["message"]}`.
type apiError struct {
	status     int
	body       any
	kind       error  // what the refusal means to a caller that acts on it (errors.Is), or nil
	retryAfter int    // seconds; sets Retry-After when > 0
	challenge  string // WWW-Authenticate value, if any
}

// Unwrap gives the refusal's kind, so that callers choose their next step
// with errors.Is, never by the message.
func (e *apiError) Unwrap() error { return e.kind }

// because sets the refusal's kind.
func (e *apiError) because(kind error) *apiError {
	e.kind = kind
	return e
}

func (e *apiError) Error() string {
	b, _ := json.Marshal(e.body)
	return http.StatusText(e.status) + ": " + string(b)
}

// errDetail is an error with a `detail` message and no code.
func errDetail(status int, msg string) *apiError {
	return &apiError{status: status, body: map[string]string{"detail": msg}}
}

// errCode is an error with a `detail` message and a `code`.
func errCode(status int, msg, code string) *apiError {
	return &apiError{status: status, body: map[string]string{"detail": msg, "code": code}}
}

// errFields is a 400 keyed by field name.
func errFields(fields map[string][]string) *apiError {
	return &apiError{status: http.StatusBadRequest, body: fields}
}

// errField is a 400 with one message on one field.
func errField(field, msg string) *apiError {
	return errFields(map[string][]string{field: {msg}})
}

// Messages shared by several endpoints.
const (
	msgNoCredentials    = "Authentication credentials were not provided."
	msgTokenInvalid     = "Token is invalid or expired"
	msgFieldRequired    = jsonform.MsgRequired
	msgFieldBlank       = jsonform.MsgBlank
	msgPermissionDenied = "You do not have permission to perform this action."
	msgNoActiveAccount  = "No active account found with the given credentials"
)

// errNotAuthenticated is the 401 for a request without credentials.
func errNotAuthenticated() *apiError {
	e := errDetail(http.StatusUnauthorized, msgNoCredentials)
	e.challenge = `Bearer realm="api"`
	return e
}

// errTokenNotValid is the 401 for a refresh token that cannot be used.
func errTokenNotValid(msg string) *apiError {
	return errCode(http.StatusUnauthorized, msg, "token_not_valid")
}

// errThrottled is a 429 whose message ends with the wait, as DRF words it.
func errThrottled(msg string, wait int) *apiError {
	if wait < 1 {
		wait = 1
	}
	unit := "seconds"
	if wait == 1 {
		unit = "second"
	}
	e := errDetail(http.StatusTooManyRequests, msg+" Expected available in "+strconv.Itoa(wait)+" "+unit+".")
	e.retryAfter = wait
	return e
}

// writeJSON writes v as the JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// writeError answers err: an apiError is written as its JSON body; a
// sentinel that should have been handled, or a secret that does not open,
// is a bug and goes back to Caddy as a 500 with nothing written; any other
// error is a failing dependency (the database, the hash queue) and gets a
// 503 JSON body, logged here at error level since it is not returned, and
// counted in m.
func writeError(w http.ResponseWriter, logger *zap.Logger, m *metrics, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(ae.retryAfter))
		}
		if ae.challenge != "" {
			w.Header().Set("WWW-Authenticate", ae.challenge)
		}
		return writeJSON(w, ae.status, ae.body)
	}
	if !isBug(err) {
		dependencyFailed(w, logger, m, err)
		return writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"detail": "Service temporarily unavailable, try again later.",
			"code":   "service_unavailable",
		})
	}
	return caddyhttp.Error(http.StatusInternalServerError, err)
}

// dependencyFailed logs and counts a failing dependency and sets the
// Retry-After of the 503 that answers it (JSON here, a page in
// pageHandler).
func dependencyFailed(w http.ResponseWriter, logger *zap.Logger, m *metrics, err error) {
	logger.Error("dependency unavailable", zap.Error(err))
	m.unavailable(err)
	w.Header().Set("Retry-After", "5")
}

// isBug tells errors that no outage explains from dependency failures.
func isBug(err error) bool {
	// An error already given its status (a template that fails to render)
	// is ours, not an outage.
	var handled caddyhttp.HandlerError
	if errors.As(err, &handled) {
		return true
	}
	for _, e := range []error{account.ErrNotFound, account.ErrConflict, account.ErrDisabled, secretbox.ErrOpen, errUnknownThrottle} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
