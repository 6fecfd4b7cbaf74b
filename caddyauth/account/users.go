package account

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Users is the profile of a signed-in user and the administrator's
// operations of the command line.
type Users struct{ *core }

// NormalizeEmail lower-cases and trims an address, as every lookup does.
func NormalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// ValidEmail accepts a plain address (no display name), at most 254
// characters, with a dotted domain.
func ValidEmail(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == "" && strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".")
}

// Messages of e-mail and name fields.
const (
	MsgInvalidEmail = "Enter a valid email address."
	msgNameFormat   = "Incorrect format"
	maxEmailLength  = 100
	maxNameLength   = 100
)

// checkEmail checks the address of field email, already normalised: at
// most 100 characters, and valid (no display name, no line breaks). A
// failure is recorded in fe; the address is "" then.
func checkEmail(fe *FieldErrors, email string) string {
	if fe.Has("email") {
		return ""
	}
	if utf8.RuneCountInString(email) > maxEmailLength {
		fe.Add("email", jsonform.MaxLenMessage(maxEmailLength))
		return ""
	}
	if !ValidEmail(email) {
		fe.Add("email", MsgInvalidEmail)
		return ""
	}
	return email
}

// checkName checks first_name or last_name (field name): letters (ASCII
// and Latin-1) and spaces only, at most 100 characters. It returns the
// name as stored, runs of spaces collapsed and each word capitalised, or
// "" when it is empty or wrong (recorded in fe).
func checkName(fe *FieldErrors, name, s string) string {
	if s == "" || fe.Has(name) {
		return ""
	}
	if utf8.RuneCountInString(s) > maxNameLength {
		fe.Add(name, jsonform.MaxLenMessage(maxNameLength))
		return ""
	}
	for _, r := range s {
		latin1Letter := r >= 0xC0 && r <= 0xFF && r != 0xD7 && r != 0xF7
		if r != ' ' && !(r < 0x80 && unicode.IsLetter(r)) && !latin1Letter {
			fe.Add(name, msgNameFormat)
			return ""
		}
	}
	words := strings.Fields(s)
	for i, w := range words {
		r, size := utf8.DecodeRuneInString(w)
		words[i] = string(unicode.ToUpper(r)) + strings.ToLower(w[size:])
	}
	return strings.Join(words, " ")
}

// Profile returns the profile of the caller of the verified access token c.
func (rl *Users) Profile(ctx context.Context, c tokens.Claims) (Profile, error) {
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if err != nil {
		return Profile{}, userGone(err)
	}
	return profileOf(u), nil
}

// NameChange is a PATCH of the profile: each name is changed when its Set
// is true. Invalid holds what decoding the body found wrong.
type NameChange struct {
	FirstName, LastName       string
	SetFirstName, SetLastName bool
	Invalid                   FieldErrors
}

// ChangeNames applies a PATCH of the caller's profile
// once the caller's session is known live, with the row locked while the
// names change: a slow body cannot carry a stale copy of the row past a
// concurrent change.
func (rl *Users) ChangeNames(ctx context.Context, c tokens.Claims, in NameChange) (Profile, error) {
	if err := rl.liveSession(ctx, c); err != nil {
		return Profile{}, err
	}
	var u User
	err := rl.store.InTx(ctx, func(tx Store) error {
		var err error
		if u, err = tx.UserForUpdate(ctx, c.NumericUserID()); err != nil {
			return err
		}
		fe := in.Invalid
		if in.SetFirstName {
			u.FirstName = in.FirstName
			if utf8.RuneCountInString(u.FirstName) > 150 {
				fe.Add("first_name", jsonform.MaxLenMessage(150))
			}
		}
		if in.SetLastName {
			u.LastName = in.LastName
			if utf8.RuneCountInString(u.LastName) > 150 {
				fe.Add("last_name", jsonform.MaxLenMessage(150))
			}
		}
		if err := fe.Err(); err != nil {
			return err
		}
		return tx.SetNames(ctx, u.ID, u.FirstName, u.LastName)
	})
	if err != nil {
		return Profile{}, userGone(err)
	}
	return profileOf(u), nil
}

// Create adds an active account with a verified address, as an
// administrator does from the command line.
func (rl *Users) Create(ctx context.Context, email, password string, role int) (User, error) {
	if err := checkRole(role); err != nil {
		return User{}, err
	}
	email = NormalizeEmail(email)
	if !ValidEmail(email) {
		return User{}, fmt.Errorf("%q is not a valid e-mail address", email)
	}
	if msgs := passwords.Validate(password, email); len(msgs) > 0 {
		return User{}, errors.New(strings.Join(msgs, " "))
	}
	hash, err := rl.hasher.Hash(ctx, password)
	if err != nil {
		return User{}, err
	}
	u := User{
		Email:         email,
		PasswordHash:  hash,
		Role:          role,
		IsActive:      true,
		EmailVerified: true,
		DateJoined:    rl.now(),
	}
	u.ID, err = rl.store.CreateUser(ctx, u)
	if errors.Is(err, ErrConflict) {
		return User{}, fmt.Errorf("a user with e-mail %s already exists", email)
	}
	return u, err
}

// checkRole refuses a role outside the range an invitation may grant (0
// to 32767, the reference's small integer).
func checkRole(role int) error {
	if role < 0 || role > maxRole {
		return fmt.Errorf("role %d is not a role (0 to %d)", role, maxRole)
	}
	return nil
}

// lookup finds the account of an address for the command line.
func (rl *Users) lookup(ctx context.Context, email string) (User, error) {
	u, err := rl.store.UserByEmail(ctx, NormalizeEmail(email))
	if errors.Is(err, ErrNotFound) {
		return User{}, fmt.Errorf("no user with e-mail %s", strconv.Quote(NormalizeEmail(email)))
	}
	return u, err
}

// SetRole gives the account of email a role; tokens carry it from their
// next refresh.
func (rl *Users) SetRole(ctx context.Context, email string, role int) (User, error) {
	if err := checkRole(role); err != nil {
		return User{}, err
	}
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return User{}, err
	}
	return u, rl.store.SetRole(ctx, u.ID, role)
}

// Disable disables the account of email and ends its sessions and its
// pending links, capabilities and MFA challenges.
func (rl *Users) Disable(ctx context.Context, email string) (User, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return User{}, err
	}
	if err := rl.store.InTx(ctx, func(tx Store) error { return disableUser(ctx, tx, u.ID) }); err != nil {
		return User{}, err
	}
	rl.auditSessionRevoked(ctx, u.ID, "user_disabled")
	return u, nil
}

// disableUser disables user id and ends its sessions and its pending
// links, capabilities and MFA challenges, in the transaction tx.
func disableUser(ctx context.Context, tx Store, id int64) error {
	if err := tx.SetActive(ctx, id, false); err != nil {
		return err
	}
	// Every session, and every link, capability and challenge issued
	// before: enabling the account again revives none of them.
	return revokeCredentials(ctx, tx, id)
}

// Enable enables the account of email again.
func (rl *Users) Enable(ctx context.Context, email string) (User, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return User{}, err
	}
	return u, rl.store.SetActive(ctx, u.ID, true)
}

// ResetMFA removes the TOTP and recovery codes of the account of email
// and lifts its MFA lockout.
func (rl *Users) ResetMFA(ctx context.Context, email string) (User, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return User{}, err
	}
	// The user's row is locked first, as a check of a code does
	// (countedCheck): the check answers from the failures it read under
	// that lock, which this clears.
	return u, rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, u.ID); err != nil {
			return err
		}
		return resetFactors(ctx, tx, u.ID)
	})
}

// resetFactors removes the TOTP, recovery codes and passkeys of user id,
// its MFA failures and its pending challenges, in the transaction tx,
// which has locked the user's row.
func resetFactors(ctx context.Context, tx Store, id int64) error {
	if _, err := tx.DeleteAuthenticators(ctx, id); err != nil {
		return err
	}
	if _, err := tx.DeletePasskeys(ctx, id); err != nil {
		return err
	}
	_, err := tx.DeleteUserTokens(ctx, id, purposeMFAAttempt, purposeMFALoginChallenge, purposeMFASetupSecret)
	return err
}

// Listed is one account as the command line lists it.
type Listed struct {
	User
	TOTP      bool
	Passkeys  int
	Providers []string // the providers it is linked to, in link order
}

// List returns every account, with whether it has TOTP and the providers
// it is linked to.
func (rl *Users) List(ctx context.Context) ([]Listed, error) {
	users, err := rl.store.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(users))
	for _, u := range users {
		totp, err := rl.mfa.hasTOTP(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		links, err := rl.store.SocialAccounts(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		keys, err := rl.store.Passkeys(ctx, u.ID)
		if err != nil {
			return nil, err
		}
		l := Listed{User: u, TOTP: totp, Passkeys: len(keys)}
		for _, a := range links {
			l.Providers = append(l.Providers, a.Provider)
		}
		out = append(out, l)
	}
	return out, nil
}
