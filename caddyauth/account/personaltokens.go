package account

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// PersonalTokens are the personal access tokens of accounts, for scripts
// that cannot sign in (POST, GET {prefix}/tokens/, DELETE
// {prefix}/tokens/<id>/). A token is `jat_` and 43 base64url characters
// (32 random bytes): it has no dots, so it is never taken for a JWT, and
// the account endpoints, which read JWTs only, refuse it. Only guards with
// `access_tokens` accept one (Check).
type PersonalTokens struct{ *core }

// PersonalTokenPrefix begins every personal access token.
const PersonalTokenPrefix = "jat_"

// personalTokenLen is the length of a token: the prefix and 32 bytes in
// base64url without padding.
const personalTokenLen = len(PersonalTokenPrefix) + 43

// PersonalTokenCacheTTL is how long a node keeps the answer of a token
// (valid or not found): a revocation, an expiry reached early by a change
// of the row, or a disabled owner takes effect on other nodes within it.
const PersonalTokenCacheTTL = 5 * time.Second

// personalTokenTouch is how stale a token's last_used may get before a
// use writes it again: at most one write a minute per token.
const personalTokenTouch = time.Minute

// Limits of personal tokens.
const (
	maxPersonalTokens   = 50  // per account
	maxPersonalTokenLen = 100 // characters of a name
)

const (
	msgTokenNotFound   = "Not found."
	msgTooManyTokens   = "You have too many personal access tokens: revoke one first."
	msgTokenRoleTooBig = "A token carries your own role or 0."
)

// IsPersonalToken reports whether raw has the shape of a personal access
// token (not whether it is valid).
func IsPersonalToken(raw string) bool {
	return len(raw) == personalTokenLen && strings.HasPrefix(raw, PersonalTokenPrefix)
}

// personalTokenSum is the SHA-256 of a token, hashed from a copy on the
// stack: []byte(raw) would allocate at a token's length.
func personalTokenSum(raw string) [sha256.Size]byte {
	var buf [personalTokenLen]byte
	return sha256.Sum256(append(buf[:0], raw...))
}

// personalTokenHash is what the store keeps of a token: its sum in hex.
func personalTokenHash(sum [sha256.Size]byte) string {
	return hex.EncodeToString(sum[:])
}

// TokenRequest is a creation of a personal token (POST {prefix}/tokens/):
// the bearer access token, the current password (optional, see
// reauthenticate), and the body's name, lifetime in days and role (nil:
// the owner's).
type TokenRequest struct {
	Form
	Access, Password, Name string
	ExpiresInDays          int
	Role                   *int
}

// NewPersonalToken is a token just made: its row and its secret, shown
// this once.
type NewPersonalToken struct {
	PersonalToken
	Token string
}

// Create makes a personal token for the bearer of a live session that
// authenticated recently (or sends its password), as a TOTP enrolment
// asks. Its lifetime is at most pat_max_ttl, its role at most the
// owner's.
func (rl *PersonalTokens) Create(ctx context.Context, o Origin, in TokenRequest) (NewPersonalToken, error) {
	ctx = withOrigin(ctx, o)
	if err := rl.throttle(ctx, throttleTokenCreateIP, rl.clientKey(o.IP)); err != nil {
		return NewPersonalToken{}, err
	}
	if in.Refused != nil {
		return NewPersonalToken{}, in.Refused
	}
	c, err := rl.sessions.LiveAccess(ctx, in.Access)
	if err != nil {
		return NewPersonalToken{}, err
	}
	u, err := rl.store.UserByID(ctx, c.NumericUserID())
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		return NewPersonalToken{}, errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return NewPersonalToken{}, err
	}
	maxDays := int(rl.policy.PersonalTokenMaxTTL / (24 * time.Hour))
	if !in.Invalid.Has("expires_in_days") && (in.ExpiresInDays < 1 || in.ExpiresInDays > maxDays) {
		in.Invalid.Add("expires_in_days", "Ensure this value is between 1 and "+strconv.Itoa(maxDays)+".")
	}
	role := u.Role
	if in.Role != nil {
		role = *in.Role
	}
	// Roles are labels, not ranks (a guard lists the roles it lets in):
	// a token carries its owner's role or none, never another.
	if !in.Invalid.Has("role") && role != u.Role && role != 0 {
		in.Invalid.Add("role", msgTokenRoleTooBig)
	}
	if err := in.Invalid.errOf(); err != nil {
		return NewPersonalToken{}, err
	}
	if err := rl.reauthenticate(ctx, c, u, in.Password); err != nil {
		return NewPersonalToken{}, err
	}
	secret, err := newLinkSecret(rl.rand)
	if err != nil {
		return NewPersonalToken{}, err
	}
	now := rl.now()
	out := NewPersonalToken{Token: PersonalTokenPrefix + secret, PersonalToken: PersonalToken{
		UserID: u.ID, Name: in.Name, Role: role, Created: now,
		Expires: now.Add(time.Duration(in.ExpiresInDays) * 24 * time.Hour),
	}}
	out.Hash = personalTokenHash(personalTokenSum(out.Token))
	err = rl.store.InTx(ctx, func(tx Store) error {
		if _, err := tx.UserForUpdate(ctx, u.ID); err != nil {
			return userGone(err)
		}
		list, err := tx.PersonalTokens(ctx, u.ID)
		if err != nil {
			return err
		}
		if len(list) >= maxPersonalTokens {
			return refuse(Invalid, msgTooManyTokens)
		}
		out.ID, err = tx.CreatePersonalToken(ctx, out.PersonalToken)
		return err
	})
	if err != nil {
		return NewPersonalToken{}, err
	}
	rl.audit(ctx, auditTokenCreated, u.ID, slog.Int64("token_id", out.ID), slog.Int("role", role))
	return out, nil
}

// List returns the tokens of the bearer of a live session, oldest first
// (their hashes are the store's; the web layer shows none).
func (rl *PersonalTokens) List(ctx context.Context, access string) ([]PersonalToken, error) {
	c, err := rl.sessions.LiveAccess(ctx, access)
	if err != nil {
		return nil, err
	}
	return rl.store.PersonalTokens(ctx, c.NumericUserID())
}

// Revoke deletes the caller's token id; an id that names none of the
// caller's tokens is not found. This node forgets the token at once,
// other nodes within PersonalTokenCacheTTL.
func (rl *PersonalTokens) Revoke(ctx context.Context, o Origin, access, id string) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.sessions.LiveAccess(ctx, access)
	if err != nil {
		return err
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return refuse(NotFound, msgTokenNotFound)
	}
	ok, err := rl.store.DeletePersonalToken(ctx, c.NumericUserID(), n)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(NotFound, msgTokenNotFound)
	}
	rl.patCache.forget(n)
	rl.audit(ctx, auditTokenRevoked, c.NumericUserID(), slog.Int64("token_id", n))
	return nil
}

// Check verifies a personal token for a guard with `access_tokens`: it
// exists, has not expired, and its owner is active. The claims are those
// of an access token of the owner with the token's role (the owner's, if
// that is lower now) and no session. The answer is cached for
// PersonalTokenCacheTTL; expiry is checked on every use. The Identity is
// the one the cache shares.
func (rl *PersonalTokens) Check(ctx context.Context, raw string) (*Identity, error) {
	if !IsPersonalToken(raw) {
		return nil, errTokenNotValid(MsgTokenInvalid)
	}
	now := rl.now()
	sum := personalTokenSum(raw)
	e, ok := rl.patCache.get(sum, now)
	if !ok {
		var err error
		if e, err = rl.lookUp(ctx, personalTokenHash(sum), now); err != nil {
			return nil, err
		}
		rl.patCache.put(sum, e)
	}
	if e.ident == nil || !now.Before(e.expires) {
		return nil, errTokenNotValid(MsgTokenInvalid)
	}
	return e.ident, nil
}

// lookUp reads a token and its owner, and writes its last_used when it is
// more than personalTokenTouch old.
func (rl *PersonalTokens) lookUp(ctx context.Context, hash string, now time.Time) (patEntry, error) {
	e := patEntry{checked: now}
	p, err := rl.store.PersonalTokenByHash(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	u, err := rl.store.UserByID(ctx, p.UserID)
	// A token whose role is no longer its owner's (a role change since)
	// carries nothing: it is refused, not given another role.
	if errors.Is(err, ErrNotFound) || (err == nil && (!u.IsActive || (p.Role != u.Role && p.Role != 0))) {
		return e, nil
	}
	if err != nil {
		return e, err
	}
	if now.Sub(p.LastUsed) >= personalTokenTouch {
		if err := rl.store.SetPersonalTokenUsed(ctx, p.ID, now); err != nil && !errors.Is(err, ErrNotFound) {
			rl.logger.Warn("recording a personal token's use", "token_id", p.ID, "error", err)
		}
	}
	e.id, e.expires = p.ID, p.Expires
	e.ident = newIdentity(tokens.Claims{TokenType: tokens.TypeAccess, UserID: strconv.FormatInt(u.ID, 10),
		Role: p.Role, EmailVerified: u.EmailVerified})
	return e, nil
}
