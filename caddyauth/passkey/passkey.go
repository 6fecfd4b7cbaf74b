// Package passkey is the relying party of WebAuthn: it writes the options a
// browser needs to create or use a passkey, and checks what the browser
// sends back (the client data's type, challenge and origin, the RP ID hash,
// the flags, the attestation or the assertion's signature, the sign
// counter). It is stateless: the caller makes the challenges, keeps each
// ceremony's state and the credentials, and passes them in. It knows
// nothing of accounts, of the endpoints that use it, or of Caddy.
package passkey

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Errors of a ceremony's response.
var (
	// ErrInvalid: the response is malformed or does not verify (type,
	// challenge, origin, RP ID, flags, attestation, signature), or names a
	// credential or user handle that is not the user's.
	ErrInvalid = errors.New("invalid passkey response")
	// ErrUserVerification: a valid assertion, but the authenticator did
	// not verify the user (PIN, biometrics) when that was required.
	ErrUserVerification = errors.New("passkey user verification missing")
	// ErrCounter: a valid assertion whose sign counter did not grow while
	// the stored or the new counter is not zero, the mark of a cloned
	// authenticator. VerifyAssertion returns it with the credential used.
	ErrCounter = errors.New("passkey sign counter did not increase")
)

// DefaultTimeout is the ceremony timeout put in the options when
// Config.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// minChallenge is the shortest challenge accepted: WebAuthn asks for at
// least 16 random bytes.
const minChallenge = 16

// maxCredentialID is the longest credential ID WebAuthn allows.
const maxCredentialID = 1023

// Config is one relying party.
type Config struct {
	RPID    string   // a host name, e.g. "auth.example.com" or "localhost"
	RPName  string   // shown by some authenticators; default: the RP ID
	Origins []string // the pages' origins, e.g. "https://auth.example.com"
	// Timeout is the ceremony timeout put in the options; zero means
	// DefaultTimeout. The caller still expires its ceremonies itself.
	Timeout time.Duration
}

// RP checks the ceremonies of one relying party. It is safe for
// concurrent use.
type RP struct {
	rpID string
	wa   *webauthn.WebAuthn
}

// New checks cfg: the RP ID is a host name (no IP address, no port), and
// every origin is scheme://host[:port] whose host is the RP ID or a
// subdomain of it, over https, or http on localhost (a secure context
// too).
func New(cfg Config) (*RP, error) {
	rpID := strings.ToLower(cfg.RPID)
	if err := checkHostName(rpID); err != nil {
		return nil, fmt.Errorf("passkey RP ID %q: %w", cfg.RPID, err)
	}
	if len(cfg.Origins) == 0 {
		return nil, errors.New("passkey: no origin")
	}
	origins := make([]string, 0, len(cfg.Origins))
	for _, o := range cfg.Origins {
		origin, err := checkOrigin(o, rpID)
		if err != nil {
			return nil, fmt.Errorf("passkey origin %q: %w", o, err)
		}
		origins = append(origins, origin)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("passkey timeout %v: negative", cfg.Timeout)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	name := cfg.RPName
	if name == "" {
		name = rpID
	}
	ceremony := webauthn.TimeoutConfig{Timeout: timeout, TimeoutUVD: timeout}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  rpID,
		RPDisplayName:         name,
		RPOrigins:             origins,
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts:              webauthn.TimeoutsConfig{Login: ceremony, Registration: ceremony},
		// Client extension outputs are not signed and none is asked
		// for; a client that adds some unprompted is not refused.
		ExtensionsUnsolicitedOutputPolicy: protocol.UnsolicitedOutputPolicyIgnore,
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	return &RP{rpID: rpID, wa: wa}, nil
}

// checkHostName accepts a lower-case DNS name of letters, digits and
// hyphens, such as WebAuthn takes for an RP ID.
func checkHostName(h string) error {
	if h == "" {
		return errors.New("empty")
	}
	if net.ParseIP(h) != nil {
		return errors.New("an IP address, not a host name")
	}
	if len(h) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("not a host name")
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return errors.New("not a host name")
			}
		}
	}
	return nil
}

// checkOrigin returns raw as scheme://host[:port] in lower case when it is
// an origin of the RP ID.
func checkOrigin(raw, rpID string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" || u.Opaque != "" {
		return "", errors.New("not an absolute URL")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", errors.New("an origin has no user, path, query or fragment")
	}
	host := strings.ToLower(u.Hostname())
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return "", fmt.Errorf("host %q is neither the RP ID nor a subdomain of it", host)
	}
	localhost := host == "localhost" || strings.HasSuffix(host, ".localhost")
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && (scheme != "http" || !localhost) {
		return "", errors.New("not https (http only on localhost)")
	}
	return scheme + "://" + strings.ToLower(u.Host), nil
}

// User is the account of a ceremony, as the authenticator knows it.
type User struct {
	Handle      []byte // the WebAuthn user handle: opaque, 1 to 64 bytes
	Name        string // e.g. the address the user signs in with
	DisplayName string
	Credentials []Credential
}

// Credential is a registered passkey. VerifyAssertion returns the flags
// of the assertion it checked: UserVerified says whether that sign-in
// verified the user.
type Credential struct {
	ID, PublicKey, AAGUID []byte
	SignCount             uint32
	Transports            []string
	UserVerified          bool
	BackupEligible        bool
	BackupState           bool
	// AttestationType is what the attestation showed, in the FIDO
	// metadata's words: "none"; "basic_surrogate", a self attestation
	// signed with the credential's own key; or "basic_full", a
	// certificate chain checked against the credential but not up to a
	// root.
	AttestationType string
}

// account is a User as go-webauthn asks for it.
type account struct{ u User }

func (a account) WebAuthnID() []byte          { return a.u.Handle }
func (a account) WebAuthnName() string        { return a.u.Name }
func (a account) WebAuthnDisplayName() string { return a.u.DisplayName }
func (a account) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(a.u.Credentials))
	for i, c := range a.u.Credentials {
		out[i] = c.library()
	}
	return out
}

// library is c as go-webauthn keeps a credential.
func (c Credential) library() webauthn.Credential {
	transports := make([]protocol.AuthenticatorTransport, len(c.Transports))
	for i, t := range c.Transports {
		transports[i] = protocol.AuthenticatorTransport(t)
	}
	return webauthn.Credential{
		ID:              c.ID,
		PublicKey:       c.PublicKey,
		AttestationType: c.AttestationType,
		Transport:       transports,
		Flags: webauthn.CredentialFlags{
			UserVerified:   c.UserVerified,
			BackupEligible: c.BackupEligible,
			BackupState:    c.BackupState,
		},
		Authenticator: webauthn.Authenticator{AAGUID: c.AAGUID, SignCount: c.SignCount},
	}
}

// credential is go-webauthn's c as a Credential.
func credential(c webauthn.Credential) Credential {
	transports := make([]string, len(c.Transport))
	for i, t := range c.Transport {
		transports[i] = string(t)
	}
	return Credential{
		ID:              c.ID,
		PublicKey:       c.PublicKey,
		AAGUID:          c.Authenticator.AAGUID,
		SignCount:       c.Authenticator.SignCount,
		Transports:      transports,
		UserVerified:    c.Flags.UserVerified,
		BackupEligible:  c.Flags.BackupEligible,
		BackupState:     c.Flags.BackupState,
		AttestationType: c.AttestationType,
	}
}

// descriptors lists creds as the options name credentials.
func descriptors(creds []Credential) []protocol.CredentialDescriptor {
	out := make([]protocol.CredentialDescriptor, len(creds))
	for i, c := range creds {
		lib := c.library()
		out[i] = lib.Descriptor()
	}
	return out
}

// indexOf is the index of the credential id in creds, or -1.
func indexOf(creds []Credential, id []byte) int {
	for i, c := range creds {
		if bytes.Equal(c.ID, id) {
			return i
		}
	}
	return -1
}

// checkChallenge refuses a challenge too short to be one of the caller's:
// that is a bug of the caller, not a bad response.
func checkChallenge(challenge []byte) error {
	if len(challenge) < minChallenge {
		return fmt.Errorf("passkey: a challenge of %d bytes, want at least %d", len(challenge), minChallenge)
	}
	return nil
}

// session is the state go-webauthn expects back from the options it
// wrote, rebuilt from what the caller kept: the challenge and the user.
func (rp *RP) session(u User, challenge []byte) webauthn.SessionData {
	return webauthn.SessionData{
		Challenge:        base64.RawURLEncoding.EncodeToString(challenge),
		RelyingPartyID:   rp.rpID,
		UserID:           u.Handle,
		UserVerification: protocol.VerificationPreferred,
		CredParams:       webauthn.CredentialParametersDefault(),
	}
}

// invalid wraps a refusal of go-webauthn as ErrInvalid, with its details
// for the logs.
func invalid(err error) error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s %s", ErrInvalid, pe.Details, pe.DevInfo)
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

// ChallengeOf reads, without verifying anything, the challenge in the
// client data of an attestation or an assertion response (the JSON of the
// browser's credential.toJSON()), for the caller to find the ceremony it
// answers.
func ChallengeOf(response []byte) ([]byte, error) {
	var msg struct {
		Response struct {
			ClientDataJSON protocol.URLEncodedBase64 `json:"clientDataJSON"`
		} `json:"response"`
	}
	if err := json.Unmarshal(response, &msg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var client struct {
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(msg.Response.ClientDataJSON, &client); err != nil {
		return nil, fmt.Errorf("%w: client data: %v", ErrInvalid, err)
	}
	challenge, err := base64.RawURLEncoding.DecodeString(client.Challenge)
	if err != nil || len(challenge) == 0 {
		return nil, fmt.Errorf("%w: no challenge in the client data", ErrInvalid)
	}
	return challenge, nil
}

// AssertionIDs reads, without verifying anything, the credential ID of an
// assertion response and the user handle it carries (empty when the
// authenticator gave none), for the caller to find the account.
func AssertionIDs(response []byte) (credentialID, userHandle []byte, err error) {
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, nil, invalid(err)
	}
	return parsed.RawID, parsed.Response.UserHandle, nil
}
