package caddyauth

import (
	"errors"
	"fmt"
	"net/url"

	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passkey"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/relyingparty"
)

// relyingParty is the realm's WebAuthn for mode (as the core resolves
// it), or nil when passkeys are off. The RP ID is the host of public_url
// and the origin its scheme and host, unless passkey_rp_id and
// passkey_origins say otherwise. A mode left to its default turns
// passkeys off, with a note in the log, where no RP ID can be had (no
// public_url, or an IP address); a mode asked for refuses to start, as
// second_factor does with MFA disabled, where no login asks for one. An
// unknown mode builds nothing and is left to Validate.
func (a *App) relyingParty(mode account.PasskeyMode, publicURL string) (account.WebAuthn, error) {
	if a.Passkeys == string(account.PasskeysSecondFactor) && account.MFAMode(a.MFATOTPMode) != account.MFAOptional && account.MFAMode(a.MFATOTPMode) != account.MFARequired {
		return nil, errors.New("passkeys second_factor: needs mfa_totp_mode optional or required (with MFA disabled no login asks for a second factor; passwordless works without it)")
	}
	if mode != account.PasskeysSecondFactor && mode != account.PasskeysPasswordless {
		// Off, or a mode Validate refuses in its own words: Caddy
		// validates an app after provisioning it.
		return nil, nil
	}
	rpID, origins := a.PasskeyRPID, a.PasskeyOrigins
	if u, err := url.Parse(publicURL); err == nil && publicURL != "" {
		if rpID == "" {
			rpID = u.Hostname()
		}
		if len(origins) == 0 {
			origins = []string{u.Scheme + "://" + u.Host}
		}
	}
	name := a.SiteName
	if name == "" {
		name = rpID
	}
	rp, err := relyingparty.New(passkey.Config{RPID: rpID, RPName: name, Origins: origins})
	if err != nil {
		// Left to the default with no passkey option written: off, said
		// once. Any passkey option written asks for passkeys.
		if a.Passkeys == "" && a.PasskeyRPID == "" && len(a.PasskeyOrigins) == 0 {
			a.logger.Info("passkeys off: no usable relying party ID (set the global public_url to the site's https address, or http://localhost:<port> to try them; or passkey_rp_id and passkey_origins)")
			return nil, nil
		}
		return nil, fmt.Errorf("passkeys %s: %v (the RP ID is the host of the global public_url unless passkey_rp_id gives it; passkey_origins, default public_url's scheme and host, must be set without public_url)", mode, err)
	}
	a.logger.Info("passkeys on", zap.String("mode", string(mode)), zap.String("rp_id", rpID), zap.Strings("origins", origins))
	return rp, nil
}
