// Package otpcode makes and checks the one-time codes of the second
// factor: TOTP secrets, codes and provisioning URIs (RFC 6238), recovery
// codes and their stored hashes, and the QR code an authenticator app
// scans. It is pure: time and randomness come from its callers.
package otpcode

import (
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
)

// TOTP parameters (DESIGN.md decision 3, RFC 6238 defaults and
// django-allauth's): HMAC-SHA1, six digits, 30-second steps from the Unix
// epoch, 20-byte secrets.
const (
	totpPeriod      = 30
	totpDigits      = otp.DigitsSix
	totpSecretBytes = 20
	// maxTOTPSkew bounds the drift window a caller can ask for; RFC 6238
	// §5.2 recommends one step.
	maxTOTPSkew = 10
)

// totpEncoding is base32 without padding, as authenticator apps expect.
var totpEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns 20 bytes of r as 32 base32 characters.
func NewTOTPSecret(r io.Reader) (string, error) {
	b := make([]byte, totpSecretBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("reading TOTP secret: %w", err)
	}
	return totpEncoding.EncodeToString(b), nil
}

// totpStep returns the RFC 6238 time step T of t (64-bit, so it is right
// past 2038).
func totpStep(t time.Time) int64 {
	s := t.Unix()
	step := s / totpPeriod
	if s < 0 && s%totpPeriod != 0 {
		step-- // Floor, not truncation, for times before 1970.
	}
	return step
}

// totpCode returns the six-digit code of secret for time step step.
func totpCode(secret string, step int64) (string, error) {
	return hotpCode(secret, step, totpDigits)
}

// hotpCode returns the RFC 4226 code of the base32 secret for counter with
// the given number of digits.
func hotpCode(secret string, counter int64, digits otp.Digits) (string, error) {
	if counter < 0 {
		return "", fmt.Errorf("negative HOTP counter %d", counter)
	}
	return hotp.GenerateCodeCustom(secret, uint64(counter), hotp.ValidateOpts{
		Digits:    digits,
		Algorithm: otp.AlgorithmSHA1,
	})
}

// MatchTOTP reports whether code is the code of secret for a time step
// within skew steps of now's, and which step it matched. When the code
// matches several steps (a one-in-a-million coincidence) the latest is
// returned. Every candidate is computed and compared in constant time. The
// caller enforces one-time use: it accepts the step only if it is greater
// than the last step it accepted for this authenticator, and then stores
// it. A skew below zero counts as zero; one above 10 as 10.
func MatchTOTP(secret, code string, now time.Time, skew int) (step int64, ok bool) {
	if len(code) != int(totpDigits) {
		return 0, false
	}
	skew = max(0, min(skew, maxTOTPSkew))
	current := totpStep(now)
	for s := current - int64(skew); s <= current+int64(skew); s++ {
		want, err := totpCode(secret, s)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok
}

// ProvisioningURI returns the otpauth URI an authenticator app reads
// from the QR code: label "issuer:email", then the secret and the issuer
// as parameters. Digits and period are left out because they are the
// defaults (6 and 30), as django-allauth does.
func ProvisioningURI(issuer, email, secret string) string {
	var b strings.Builder
	b.WriteString("otpauth://totp/")
	b.WriteString(escapeLabel(issuer))
	b.WriteByte(':')
	b.WriteString(escapeLabel(email))
	b.WriteString("?secret=")
	b.WriteString(url.QueryEscape(secret))
	b.WriteString("&issuer=")
	b.WriteString(escapeLabel(issuer))
	return b.String()
}

// escapeLabel percent-encodes everything but unreserved characters, with
// spaces as %20, for the label and the issuer parameter alike: a "+" in
// the path is a plus sign, and Google and Microsoft Authenticator show a
// "+" in the issuer parameter as it is.
func escapeLabel(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
