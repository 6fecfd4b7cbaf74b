package account

// Purposes of generic token rows.
const (
	purposeMFASetupChallenge = "mfa_setup_challenge"
	// A sign-up's setup challenge held back until the address is confirmed.
	purposeSignupChallenge   = "mfa_signup_challenge"
	purposeMFALoginChallenge = "mfa_login_challenge"
	purposeMFASetupSecret    = "mfa_setup_secret"
	purposeMFAAttempt        = "mfa_login_attempt"
	// A refresh token's rotation: "<old jti>><new jti>", kept for the
	// browser hop's grace (RefreshHopGrace).
	purposeRefreshRotated = "refresh_rotated"
)

// Purposes of the single-use rows behind mailed links and capability
// cookies. Every such row holds the SHA-256 (hex) of its secret, never the
// secret itself. The capabilities' purposes are also their permission
// claims.
const (
	PurposePassReset         = "PASS_RESET"
	PurposePassResetAccess   = "PASS_RESET_ACCESS"
	PurposePassSetAccess     = "PASS_SET_ACCESS"
	purposeInvitation        = "INVITATION"
	purposeEmailConfirmation = "EMAIL_CONFIRMATION"
)
