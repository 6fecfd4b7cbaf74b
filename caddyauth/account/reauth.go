package account

import (
	"context"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// What a flow that changes credentials, MFA or the profile asks of its
// caller beyond a valid access token: the token's session must still be
// live (liveSession), whatever `session_check` says, and an enrolment
// must also come from a recent authentication.

// MsgReauthRequired refuses an enrolment from a session that proved
// nothing recently.
const MsgReauthRequired = "Recent authentication required: sign in again, or send your current password in the `password` field."

const msgInvalidPassword = "Invalid password."

func errReauthRequired() *Refusal {
	return refuseCode(Forbidden, MsgReauthRequired, "reauthentication_required")
}

// reauthenticate lets an enrolment of u by the bearer of the verified
// access token c through: c's session proved itself recently
// (Sessions.RecentlyAuthenticated), or password is u's current password,
// checked as every password of a signed-in user is (checkPassword:
// throttled, counted towards login failures, audited).
func (rl *core) reauthenticate(ctx context.Context, c tokens.Claims, u User, password string) error {
	if password == "" {
		if rl.sessions.RecentlyAuthenticated(c) {
			return nil
		}
		return errReauthRequired()
	}
	ok, err := rl.checkPassword(ctx, u, password, "reauthenticate")
	if err != nil {
		return err
	}
	if !ok {
		return refuse(Invalid, msgInvalidPassword)
	}
	return nil
}
