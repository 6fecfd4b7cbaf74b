package web

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// passkeyAPI is the WebAuthn endpoints: registration and management under
// {prefix}/mfa/webauthn/, the second factor of a login challenge, and
// passwordless sign-in under {prefix}/passkey/login/. Options are
// answered as the browser's PublicKeyCredential.parse…OptionsFromJSON
// takes them (under "publicKey"); credentials come as credential.toJSON()
// gives them, in the body's `credential`.
type passkeyAPI struct{ *Handler }

// writeOptions answers a ceremony's options.
func writeOptions(w http.ResponseWriter, options []byte) error {
	return writeJSON(w, http.StatusOK, json.RawMessage(options))
}

// enrolment reads who a registration is for, as a TOTP enrolment does,
// and the passkey's name and credential when they are sent.
func (h passkeyAPI) enrolment(r *http.Request, f *form, finish bool) account.PasskeyEnrolment {
	in := account.PasskeyEnrolment{Enrolment: mfaAPI(h).enrolment(r, f)}
	if finish {
		in.Name = f.Str("name", false, true)
		in.Response = f.Object("credential", true)
	}
	in.Form = f.core()
	return in
}

// registerBegin answers POST {prefix}/mfa/webauthn/register/begin/.
func (h passkeyAPI) registerBegin(w http.ResponseWriter, r *http.Request) error {
	options, err := h.svc.Passkeys.RegisterBegin(r.Context(), h.origin(r), h.enrolment(r, readForm(w, r), false))
	if err != nil {
		return err
	}
	return writeOptions(w, options)
}

// registerFinish answers POST {prefix}/mfa/webauthn/register/finish/:
// 201 with the passkey (and recovery codes when the account had none);
// in the required-mode bootstrap, 200 with the session as well.
func (h passkeyAPI) registerFinish(w http.ResponseWriter, r *http.Request) error {
	reg, err := h.svc.Passkeys.RegisterFinish(r.Context(), h.origin(r), h.enrolment(r, readForm(w, r), true))
	if err != nil {
		return err
	}
	body := passkeyJSON(reg.Passkey)
	if reg.Codes != nil {
		body["recovery_codes"] = reg.Codes
	}
	if reg.Opened {
		body["success"] = true
		return h.writeTokens(w, http.StatusOK, reg.Pair, body)
	}
	return writeJSON(w, http.StatusCreated, body)
}

// passkeyJSON is a passkey as its owner sees it: never its key.
func passkeyJSON(p account.Passkey) map[string]any {
	var last any
	if !p.LastUsed.IsZero() {
		last = p.LastUsed.UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{
		"id":           p.ID,
		"type":         "webauthn",
		"name":         p.Name,
		"created_at":   p.Created.UTC().Format(time.RFC3339Nano),
		"last_used_at": last,
		"synced":       p.BackupEligible,
		"locked":       p.Locked,
	}
}

// passkey answers PATCH (rename, `name`) and DELETE (`password` for an
// old session) of {prefix}/mfa/webauthn/<id>/.
func (h passkeyAPI) passkey(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(strings.Trim(h.pathParam(r, "/mfa/webauthn/"), "/"), 10, 64)
	if err != nil || id <= 0 {
		return errDetail(http.StatusNotFound, "Not found.")
	}
	f := readForm(w, r)
	if r.Method == http.MethodPatch {
		name := f.Str("name", true, true)
		if err := f.err(); err != nil {
			return err
		}
		if err := h.svc.Passkeys.Rename(r.Context(), h.origin(r), bearerToken(r), id, name); err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"id": id, "name": name})
	}
	in := mfaAPI(h).enrolment(r, f)
	if err := f.err(); err != nil {
		return err
	}
	if err := h.svc.Passkeys.Delete(r.Context(), h.origin(r), in, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// begin answers POST {prefix}/mfa/webauthn/begin/: request options for
// the passkeys of the login challenge's account.
func (h passkeyAPI) begin(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	challenge := f.Str("challenge_id", true, true)
	if err := f.err(); err != nil {
		return err
	}
	options, err := h.svc.Passkeys.SecondFactorBegin(r.Context(), h.origin(r), challenge)
	if err != nil {
		return err
	}
	return writeOptions(w, options)
}

// verify answers POST {prefix}/mfa/webauthn/verify/: a login challenge
// and a passkey's assertion open the session, as /mfa/verify/ does.
func (h passkeyAPI) verify(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.SecondFactor{Challenge: f.Str("challenge_id", true, true), Passkey: f.Object("credential", true)}
	if in.Passkey == nil {
		// Never a nil assertion: the core tells factors apart by it.
		in.Passkey = []byte{}
	}
	return mfaAPI(h).secondFactor(w, r, f, in)
}

// loginBegin answers POST {prefix}/passkey/login/begin/.
func (h passkeyAPI) loginBegin(w http.ResponseWriter, r *http.Request) error {
	options, err := h.svc.Passkeys.LoginBegin(r.Context(), h.origin(r))
	if err != nil {
		return err
	}
	return writeOptions(w, options)
}

// loginFinish answers POST {prefix}/passkey/login/finish/ with the
// session.
func (h passkeyAPI) loginFinish(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	response := f.Object("credential", true)
	if err := f.err(); err != nil {
		return err
	}
	step, err := h.svc.Passkeys.LoginFinish(r.Context(), h.origin(r), response)
	if err != nil {
		return err
	}
	return h.writeStep(w, http.StatusOK, step, nil)
}
