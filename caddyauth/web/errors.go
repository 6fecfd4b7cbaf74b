package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// apiError is a refusal this layer makes itself, of the request as HTTP
// (a path, a method, a body), in the shape Django REST framework gives:
// `{"detail": "..."}`. The core's refusals are account.Refusal.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return http.StatusText(e.status) + ": " + e.detail }

func errDetail(status int, msg string) *apiError {
	return &apiError{status: status, detail: msg}
}

// Bug is an error no outage explains (a template that fails to render): the
// adapter answers it 500, nothing written.
type Bug struct{ Err error }

func (b *Bug) Error() string { return b.Err.Error() }
func (b *Bug) Unwrap() error { return b.Err }

// statusOf is the status code of a refusal of kind.
func statusOf(kind account.Kind) int {
	switch kind {
	case account.Unauthenticated:
		return http.StatusUnauthorized
	case account.Forbidden:
		return http.StatusForbidden
	case account.Throttled:
		return http.StatusTooManyRequests
	case account.NotFound:
		return http.StatusNotFound
	case account.Conflict:
		return http.StatusConflict
	default:
		return http.StatusBadRequest
	}
}

// refusalBody is the DRF-shaped body of a core refusal.
func refusalBody(r *account.Refusal) any {
	switch {
	case r.Fields != nil:
		return map[string][]string(r.Fields)
	case r.TokenProblem != "":
		return map[string]any{
			"detail": r.Detail,
			"code":   r.Code,
			"messages": []map[string]string{{
				"token_class": "AccessToken",
				"token_type":  tokens.TypeAccess,
				"message":     r.TokenProblem,
			}},
		}
	case r.Code != "":
		return map[string]string{"detail": r.Detail, "code": r.Code}
	default:
		return map[string]string{"detail": r.Detail}
	}
}

// challengeOf is the WWW-Authenticate value of a refusal, if it has one.
func challengeOf(err error) string {
	switch {
	case errors.Is(err, account.ErrNoCredentials):
		return `Bearer realm="api"`
	case errors.Is(err, account.ErrSessionEnded) || errors.Is(err, account.ErrAccessToken):
		return `Bearer realm="api", error="invalid_token"`
	case errors.Is(err, account.ErrNoCapability):
		return "Cookie"
	}
	return ""
}

// refusalOf is the status and the message of a refusal for a page: the
// detail, or the first field message. ok is false for an error that is no
// refusal.
func refusalOf(err error) (status int, msg string, retryAfter int, ok bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.detail, 0, true
	}
	var r *account.Refusal
	if !errors.As(err, &r) {
		return 0, "", 0, false
	}
	msg = r.Detail
	for _, msgs := range r.Fields {
		if len(msgs) > 0 {
			msg = msgs[0]
			break
		}
	}
	return statusOf(r.Kind), msg, r.RetryAfter, true
}

// drfTime is how a JSON body writes a time: UTC with microseconds, as
// the store keeps them and as DRF writes times.
const drfTime = "2006-01-02T15:04:05.000000Z07:00"

// writeJSON writes v as the JSON body with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return &Bug{err}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(b)
	return err
}

// WriteError answers err: a refusal is written as its JSON body; a
// sentinel that should have been handled, or a secret that does not open,
// is a bug and comes back as a *Bug for Caddy to answer 500; any other
// error is a failing dependency (the database, the hash queue) and gets a
// 503 JSON body, logged here at error level since it is not returned, and
// counted by failures.
func WriteError(w http.ResponseWriter, logger *zap.Logger, failures Failures, err error) error {
	var ae *apiError
	if errors.As(err, &ae) {
		return writeJSON(w, ae.status, map[string]string{"detail": ae.detail})
	}
	var r *account.Refusal
	if errors.As(err, &r) {
		if r.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(r.RetryAfter))
		}
		if c := challengeOf(err); c != "" {
			w.Header().Set("WWW-Authenticate", c)
		}
		return writeJSON(w, statusOf(r.Kind), refusalBody(r))
	}
	if bug := asBug(err); bug != nil {
		return bug
	}
	dependencyFailed(w, logger, failures, err)
	return writeJSON(w, http.StatusServiceUnavailable, map[string]string{
		"detail": "Service temporarily unavailable, try again later.",
		"code":   "service_unavailable",
	})
}

// Failures counts failing dependencies.
type Failures interface {
	Unavailable(err error)
}

// dependencyFailed logs and counts a failing dependency and sets the
// Retry-After of the 503 that answers it (JSON here, a page in
// pageHandler).
func dependencyFailed(w http.ResponseWriter, logger *zap.Logger, failures Failures, err error) {
	logger.Error("dependency unavailable", zap.Error(err))
	failures.Unavailable(err)
	w.Header().Set("Retry-After", "5")
}

// asBug is err as a bug, or nil when a failing dependency explains it.
func asBug(err error) *Bug {
	var bug *Bug
	if errors.As(err, &bug) {
		return bug
	}
	for _, e := range []error{account.ErrNotFound, account.ErrConflict, account.ErrDisabled, secretbox.ErrOpen, account.ErrUnknownThrottle} {
		if errors.Is(err, e) {
			return &Bug{err}
		}
	}
	return nil
}
