// Package relyingparty is the account core's WebAuthn made of the passkey
// leaf: it turns the core's passkeys and users into the leaf's
// credentials and back, and the leaf's verdicts into the core's errors.
// The adapter builds one per realm; core-level tests use the same.
package relyingparty

import (
	"errors"
	"fmt"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passkey"
)

// RP is an account.WebAuthn.
type RP struct{ rp *passkey.RP }

var _ account.WebAuthn = RP{}

// New checks cfg and returns its relying party.
func New(cfg passkey.Config) (RP, error) {
	rp, err := passkey.New(cfg)
	return RP{rp}, err
}

func credential(p account.Passkey) passkey.Credential {
	return passkey.Credential{ID: p.CredentialID, PublicKey: p.PublicKey, AAGUID: p.AAGUID, SignCount: p.SignCount,
		Transports: p.Transports, UserVerified: p.UserVerified, BackupEligible: p.BackupEligible, BackupState: p.BackupState}
}

func credentials(keys []account.Passkey) []passkey.Credential {
	out := make([]passkey.Credential, 0, len(keys))
	for _, k := range keys {
		out = append(out, credential(k))
	}
	return out
}

func user(u account.PasskeyUser) passkey.User {
	return passkey.User{Handle: u.Handle, Name: u.Name, DisplayName: u.DisplayName, Credentials: credentials(u.Passkeys)}
}

func stored(c passkey.Credential) account.Passkey {
	return account.Passkey{CredentialID: c.ID, PublicKey: c.PublicKey, AAGUID: c.AAGUID, SignCount: c.SignCount,
		Transports: c.Transports, UserVerified: c.UserVerified, BackupEligible: c.BackupEligible, BackupState: c.BackupState}
}

// verdict is the leaf's error in the core's terms; any other error is the
// caller's bug and stays as it is.
func verdict(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, passkey.ErrCounter):
		return fmt.Errorf("%w: %v", account.ErrPasskeyCounter, err)
	case errors.Is(err, passkey.ErrUserVerification):
		return fmt.Errorf("%w: %v", account.ErrPasskeyUserVerification, err)
	case errors.Is(err, passkey.ErrInvalid):
		return fmt.Errorf("%w: %v", account.ErrPasskeyInvalid, err)
	}
	return err
}

func (r RP) RegistrationOptions(u account.PasskeyUser, challenge []byte, discoverable bool) ([]byte, error) {
	return r.rp.RegistrationOptions(user(u), challenge, discoverable)
}

func (r RP) VerifyRegistration(u account.PasskeyUser, challenge, response []byte) (account.Passkey, error) {
	c, err := r.rp.VerifyRegistration(user(u), challenge, response)
	return stored(c), verdict(err)
}

func (r RP) AssertionOptions(allowed []account.Passkey, challenge []byte, requireUV bool) ([]byte, error) {
	return r.rp.AssertionOptions(credentials(allowed), challenge, requireUV)
}

func (r RP) ChallengeOf(response []byte) ([]byte, error) { return passkey.ChallengeOf(response) }

func (r RP) AssertionIDs(response []byte) (credentialID, userHandle []byte, err error) {
	return passkey.AssertionIDs(response)
}

func (r RP) VerifyAssertion(u account.PasskeyUser, challenge, response []byte, requireUV bool) (account.Passkey, error) {
	c, err := r.rp.VerifyAssertion(user(u), challenge, response, requireUV)
	return stored(c), verdict(err)
}
