package passkey

import (
	"encoding/json"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// attestationFormats are the attestation statements taken at
// registration: none (what browsers send when asked for none) and packed,
// whose self attestation or certificate chain is checked against the
// credential but not up to a root.
var attestationFormats = map[string]bool{
	string(protocol.AttestationFormatNone):   true,
	string(protocol.AttestationFormatPacked): true,
}

// RegistrationOptions is the JSON of the options to create a passkey for u
// ({"publicKey": {...}}; the inner object is what the browser's
// PublicKeyCredential.parseCreationOptionsFromJSON takes): a discoverable
// credential required when discoverable (for passwordless sign-in), else
// preferred; user verification preferred; attestation none; u's
// credentials excluded.
func (rp *RP) RegistrationOptions(u User, challenge []byte, discoverable bool) ([]byte, error) {
	if err := checkChallenge(challenge); err != nil {
		return nil, err
	}
	residentKey := protocol.ResidentKeyRequirementPreferred
	if discoverable {
		residentKey = protocol.ResidentKeyRequirementRequired
	}
	creation, _, err := rp.wa.BeginRegistration(account{u},
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{UserVerification: protocol.VerificationPreferred}),
		webauthn.WithResidentKeyRequirement(residentKey),
		webauthn.WithExclusions(descriptors(u.Credentials)),
		func(o *protocol.PublicKeyCredentialCreationOptions) error {
			o.Challenge = challenge
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("passkey registration options: %w", err)
	}
	return json.Marshal(creation)
}

// VerifyRegistration checks an attestation response (the JSON of the
// browser's credential.toJSON()) to the options of RegistrationOptions for
// u and challenge: the ceremony type, the challenge, the origin, the RP ID
// hash, user presence, a key algorithm the options offered, an attestation
// of format none or packed, and a credential ID that is not already u's.
// It returns the new credential.
func (rp *RP) VerifyRegistration(u User, challenge, response []byte) (Credential, error) {
	if err := checkChallenge(challenge); err != nil {
		return Credential{}, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return Credential{}, invalid(err)
	}
	if format := parsed.Response.AttestationObject.Format; !attestationFormats[format] {
		return Credential{}, fmt.Errorf("%w: attestation format %q", ErrInvalid, format)
	}
	if len(parsed.RawID) > maxCredentialID {
		return Credential{}, fmt.Errorf("%w: a credential ID of %d bytes", ErrInvalid, len(parsed.RawID))
	}
	if indexOf(u.Credentials, parsed.RawID) >= 0 {
		return Credential{}, fmt.Errorf("%w: the credential is registered already", ErrInvalid)
	}
	created, err := rp.wa.CreateCredential(account{u}, rp.session(u, challenge), parsed)
	if err != nil {
		return Credential{}, invalid(err)
	}
	return credential(*created), nil
}

// AssertionOptions is the JSON of the options to sign in with a passkey
// ({"publicKey": {...}}, for parseRequestOptionsFromJSON): the allowed
// credentials, none for a discoverable credential the browser offers
// itself; user verification required when requireUV, else preferred.
func (rp *RP) AssertionOptions(allowed []Credential, challenge []byte, requireUV bool) ([]byte, error) {
	if err := checkChallenge(challenge); err != nil {
		return nil, err
	}
	uv := protocol.VerificationPreferred
	if requireUV {
		uv = protocol.VerificationRequired
	}
	assertion, _, err := rp.wa.BeginDiscoverableLogin(
		webauthn.WithAllowedCredentials(descriptors(allowed)),
		webauthn.WithUserVerification(uv),
		webauthn.WithChallenge(challenge))
	if err != nil {
		return nil, fmt.Errorf("passkey assertion options: %w", err)
	}
	return json.Marshal(assertion)
}

// VerifyAssertion checks an assertion response (the JSON of the browser's
// credential.toJSON()) to the options of AssertionOptions for challenge,
// made with one of u's credentials: the ceremony type, the challenge, the
// origin, the RP ID hash, user presence, the user handle when present, the
// backup flags, the signature with the credential's key, then the sign
// counter (ErrCounter, returned with the credential so that the caller
// can lock it) and user verification when requireUV
// (ErrUserVerification). It returns the credential used, with the new
// counter and the assertion's flags.
func (rp *RP) VerifyAssertion(u User, challenge, response []byte, requireUV bool) (Credential, error) {
	if err := checkChallenge(challenge); err != nil {
		return Credential{}, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return Credential{}, invalid(err)
	}
	if indexOf(u.Credentials, parsed.RawID) < 0 {
		return Credential{}, fmt.Errorf("%w: not a credential of this user", ErrInvalid)
	}
	// User verification is asked for as preferred here and judged below,
	// so that only an assertion valid in every other way reports it.
	used, err := rp.wa.ValidateLogin(account{u}, rp.session(u, challenge), parsed)
	if err != nil {
		return Credential{}, invalid(err)
	}
	out := credential(*used)
	out.UserVerified = parsed.Response.AuthenticatorData.Flags.HasUserVerified()
	if used.Authenticator.CloneWarning {
		return out, fmt.Errorf("%w: stored %d, asserted %d", ErrCounter, used.Authenticator.SignCount, parsed.Response.AuthenticatorData.Counter)
	}
	if requireUV && !out.UserVerified {
		return Credential{}, ErrUserVerification
	}
	return out, nil
}
