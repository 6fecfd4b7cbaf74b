package caddyauth

// Purposes of generic token rows.
const (
	purposeMFASetupChallenge = "mfa_setup_challenge"
	// A sign-up's setup challenge held back until the address is confirmed.
	purposeSignupChallenge   = "mfa_signup_challenge"
	purposeMFALoginChallenge = "mfa_login_challenge"
	purposeMFASetupSecret    = "mfa_setup_secret"
	purposeMFAAttempt        = "mfa_login_attempt"
	// A refresh token's rotation: "<old jti>><new jti>", kept for the
	// browser hop's grace (refreshHopGrace).
	purposeRefreshRotated = "refresh_rotated"
)
