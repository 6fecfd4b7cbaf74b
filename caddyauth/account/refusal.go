package account

import (
	"encoding/json"
	"errors"
	"strconv"
)

// Kind is what sort of refusal a Refusal is. The web layer turns it into
// a status code; nothing here knows HTTP.
type Kind uint8

const (
	// Invalid: the request's content is wrong (a field, a code, a link).
	Invalid Kind = iota + 1
	// Unauthenticated: the caller is not who it needs to be (no valid
	// credentials, a token or a capability that no longer works).
	Unauthenticated
	// Forbidden: the caller is known but may not do this.
	Forbidden
	// Throttled: too many requests or failures; RetryAfter says how long.
	Throttled
	// NotFound: what the request names does not exist (for the caller).
	NotFound
	// Conflict: the request clashes with what exists (an address or an
	// identity that belongs to another account).
	Conflict
)

// Refusal is a request the rules turn down, in the terms the API answers
// it with: a message and code (the reference's wording), or messages by
// field. Any error that is not a Refusal is a failing dependency (the
// database, the rate limiter, the hashing queue) or a bug.
type Refusal struct {
	Kind   Kind
	Detail string
	Code   string
	// Fields holds messages by field name instead of a Detail.
	Fields FieldErrors
	// RetryAfter is the wait in seconds, for a Throttled refusal.
	RetryAfter int
	// TokenProblem says why an access token was refused: the reference
	// lists it with the token class (see ErrAccessToken).
	TokenProblem string

	reason error
}

// Unwrap gives the refusal's reason, so callers choose their next step with
// errors.Is, never by the message.
func (r *Refusal) Unwrap() error { return r.reason }

func (r *Refusal) Error() string {
	if r.Fields != nil {
		b, _ := json.Marshal(r.Fields)
		return "refused: " + string(b)
	}
	return "refused: " + r.Detail
}

// because sets the refusal's reason.
func (r *Refusal) because(reason error) *Refusal {
	r.reason = reason
	return r
}

// Reasons of refusals a caller acts on (errors.Is).
var (
	// ErrNoCredentials: the request carried no credentials at all.
	ErrNoCredentials = errors.New("no credentials")
	// ErrSessionEnded: the access token is valid, its session is not.
	ErrSessionEnded = errors.New("session ended")
	// ErrAccessToken: the access token did not verify.
	ErrAccessToken = errors.New("access token not valid")
	// ErrChallengeDead: the MFA login challenge can no longer succeed (it
	// is unknown or expired, spent its attempts, or the user's lockout
	// killed it); a page starts the sign-in over.
	ErrChallengeDead = errors.New("the MFA challenge can no longer succeed")
	// ErrRequestThrottled: a request throttle refused; a page words it for
	// a person and keeps its form.
	ErrRequestThrottled = errors.New("request throttled")
)

// FieldErrors are the messages of a request's fields, by field name. The
// web layer's decoding puts its own in first (a missing or mistyped
// field), the rules add theirs, and the whole set is refused at once, as
// Django REST framework answers.
type FieldErrors map[string][]string

// Add records msg on field.
func (fe *FieldErrors) Add(field, msg string) {
	if *fe == nil {
		*fe = FieldErrors{}
	}
	(*fe)[field] = append((*fe)[field], msg)
}

// Has reports whether field has a message.
func (fe FieldErrors) Has(field string) bool { return len(fe[field]) > 0 }

// Err is the refusal of the set, or nil when it is empty.
func (fe FieldErrors) Err() error { return fe.errOf() }

// errOf is the refusal of the messages of fields (of all, when none are
// named), or nil when they have none.
func (fe FieldErrors) errOf(fields ...string) error {
	out := fe
	if len(fields) > 0 {
		out = nil
		for _, f := range fields {
			if msgs := fe[f]; len(msgs) > 0 {
				if out == nil {
					out = FieldErrors{}
				}
				out[f] = msgs
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return &Refusal{Kind: Invalid, Fields: out}
}

// Form is what the web layer made of a request body: Refused when the
// body as a whole was refused (not JSON, too large, malformed), else
// Invalid, the messages of its fields. A flow judges it where the
// reference's order of checks reaches the body.
type Form struct {
	Refused error
	Invalid FieldErrors
}

// err is the body's refusal: the whole body's, else that of the messages
// of fields (of all, when none are named).
func (f Form) err(fields ...string) error {
	if f.Refused != nil {
		return f.Refused
	}
	return f.Invalid.errOf(fields...)
}

// Messages shared by several flows (the reference's wording).
const (
	MsgNoCredentials    = "Authentication credentials were not provided."
	MsgTokenInvalid     = "Token is invalid or expired"
	MsgPermissionDenied = "You do not have permission to perform this action."
	MsgNoActiveAccount  = "No active account found with the given credentials"
	msgThrottled        = "Request was throttled."
)

func refuse(kind Kind, detail string) *Refusal {
	return &Refusal{Kind: kind, Detail: detail}
}

func refuseCode(kind Kind, detail, code string) *Refusal {
	return &Refusal{Kind: kind, Detail: detail, Code: code}
}

// fieldError is an Invalid refusal with one message on one field.
func fieldError(field, msg string) *Refusal {
	return &Refusal{Kind: Invalid, Fields: FieldErrors{field: {msg}}}
}

// errNotAuthenticated refuses a request without credentials.
func errNotAuthenticated() *Refusal {
	return refuse(Unauthenticated, MsgNoCredentials).because(ErrNoCredentials)
}

// errTokenNotValid refuses a token (refresh, capability) that cannot be
// used, or a caller whose account is gone.
func errTokenNotValid(msg string) *Refusal {
	return refuseCode(Unauthenticated, msg, "token_not_valid")
}

// errSessionEnded refuses an access token of a revoked session.
func errSessionEnded() *Refusal {
	return refuseCode(Unauthenticated, "Session is no longer active.", "token_not_valid").because(ErrSessionEnded)
}

// errThrottled is a Throttled refusal whose message ends with the wait, as
// Django REST framework words it.
func errThrottled(msg string, wait int) *Refusal {
	wait = max(wait, 1)
	unit := "seconds"
	if wait == 1 {
		unit = "second"
	}
	r := refuse(Throttled, msg+" Expected available in "+strconv.Itoa(wait)+" "+unit+".")
	r.RetryAfter = wait
	return r
}

// IsRefusal reports whether err is a refusal (the client's), not a failure.
func IsRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}
