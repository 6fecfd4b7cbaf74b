package web

import (
	"net/http"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// mfaAPI is the MFA endpoints.
type mfaAPI struct{ *Handler }

// enrolment reads the body of a setup or activation call.
func (h mfaAPI) enrolment(r *http.Request, f *form) account.Enrolment {
	in := account.Enrolment{Access: bearerToken(r), SetupChallenge: f.Str("setup_challenge_id", false, true)}
	in.Password = f.password("password", false)
	return in
}

// setup answers POST {prefix}/mfa/setup/: a new pending secret (it
// replaces any earlier one), its provisioning URI and a scannable QR code.
func (h mfaAPI) setup(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := h.enrolment(r, f)
	in.Form = f.core()
	setup, err := h.svc.MFA.Setup(r.Context(), h.origin(r), in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"secret": setup.Secret, "provisioning_uri": setup.URI, "qr_code": setup.QR})
}

// codeField reads the `code` field: exactly 6 characters after trimming.
func codeField(f *form) string {
	code := f.Str("code", true, true)
	if code != "" && len(code) < 6 {
		f.Fail("code", "Ensure this field has at least 6 characters.")
	} else if len(code) > 6 {
		f.Fail("code", "Ensure this field has no more than 6 characters.")
	}
	return code
}

// activate answers POST {prefix}/mfa/activate/: the current code of the
// pending secret turns it into the user's TOTP authenticator and returns a
// fresh set of recovery codes. With a setup challenge in required mode it
// also opens the session the bootstrap held back.
func (h mfaAPI) activate(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := h.enrolment(r, f)
	code := codeField(f)
	in.Form = f.core()
	act, err := h.svc.MFA.Activate(r.Context(), h.origin(r), in, code)
	if err != nil {
		return err
	}
	body := map[string]any{"success": true, "recovery_codes": act.Codes}
	if !act.Opened {
		return writeJSON(w, http.StatusOK, body)
	}
	return h.writeTokens(w, http.StatusOK, act.Pair, body)
}

// verify answers POST {prefix}/mfa/verify/: a login challenge and the
// current TOTP code open the session.
func (h mfaAPI) verify(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.SecondFactor{Challenge: f.Str("challenge_id", true, true), Code: codeField(f)}
	return h.secondFactor(w, r, f, in)
}

// verifyRecovery answers POST {prefix}/mfa/verify-recovery/: a login
// challenge and one unused recovery code open the session; the code is
// spent.
func (h mfaAPI) verifyRecovery(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.SecondFactor{Challenge: f.Str("challenge_id", true, true), Code: f.Str("recovery_code", true, true), Recovery: true}
	return h.secondFactor(w, r, f, in)
}

func (h mfaAPI) secondFactor(w http.ResponseWriter, r *http.Request, f *form, in account.SecondFactor) error {
	in.Form = f.core()
	pair, err := h.svc.Challenges.Verify(r.Context(), h.origin(r), in)
	if err != nil {
		return err
	}
	return h.writeTokens(w, http.StatusOK, pair, nil)
}

// deactivate answers POST {prefix}/mfa/deactivate/: with the password,
// the user's TOTP and recovery codes are removed (optional mode only).
func (h mfaAPI) deactivate(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.PasswordProof{Password: f.Str("password", true, false)}
	in.Form = f.core()
	if err := h.svc.MFA.Deactivate(r.Context(), h.origin(r), bearerToken(r), in); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]bool{"success": true})
}

// authenticators answers GET {prefix}/mfa/authenticators/: the caller's
// factors, oldest first.
func (h mfaAPI) authenticators(w http.ResponseWriter, r *http.Request) error {
	auths, err := h.svc.MFA.Authenticators(r.Context(), bearerToken(r))
	if err != nil {
		return err
	}
	list := make([]map[string]any, 0, len(auths))
	for _, a := range auths {
		var lastUsed any
		if !a.LastUsedAt.IsZero() {
			lastUsed = a.LastUsedAt.UTC().Format(time.RFC3339Nano)
		}
		list = append(list, map[string]any{
			"id":           a.ID,
			"type":         a.Type,
			"created_at":   a.CreatedAt.UTC().Format(time.RFC3339Nano),
			"last_used_at": lastUsed,
		})
	}
	if h.svc.Passkeys.Available() {
		// Beyond the reference (additive entries): the passkeys, with
		// their names.
		keys, err := h.svc.Passkeys.List(r.Context(), bearerToken(r))
		if err != nil {
			return err
		}
		for _, k := range keys {
			list = append(list, passkeyJSON(k))
		}
	}
	return writeJSON(w, http.StatusOK, list)
}

// regenerateRecovery answers POST {prefix}/mfa/recovery-codes/regenerate/:
// with a current TOTP code, a new set of recovery codes replaces the old.
func (h mfaAPI) regenerateRecovery(w http.ResponseWriter, r *http.Request) error {
	f := readForm(w, r)
	in := account.CodeProof{Code: codeField(f)}
	in.Form = f.core()
	codes, err := h.svc.MFA.RegenerateRecovery(r.Context(), h.origin(r), bearerToken(r), in)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"recovery_codes": codes})
}
