// Package account is the domain core of caddy-jwt-allauth: every flow
// (login and sessions, MFA, sign-up and invitations, passwords), its
// throttles and audit lines, and the Store that keeps accounts, sessions
// and one-time tokens. It imports neither net/http nor Caddy: inputs,
// results and refusals are its own types, and store implementations
// import it.
package account

import (
	"context"
	"errors"
	"time"
)

// Roles known to the reference implementation. Any other integer is a
// project-defined role with no built-in meaning.
const (
	RoleUser      = 0
	RoleSuperuser = 900
	RoleStaff     = 1000
)

// Errors a Store returns. Any other error means the database itself failed
// (unreachable, deadline exceeded, ...): the request is answered 503.
var (
	// ErrNotFound: no row matched (or it had expired, or was already consumed).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique value (e-mail address, key name) is already taken.
	ErrConflict = errors.New("conflict")
	// ErrDisabled: the refresh token exists but its row is disabled.
	ErrDisabled = errors.New("disabled")
)

// User is one account. E-mail addresses are stored lower-cased and trimmed.
type User struct {
	ID            int64
	Email         string
	PasswordHash  string // "" means the account has no usable password
	FirstName     string
	LastName      string
	Role          int
	IsActive      bool
	EmailVerified bool
	DateJoined    time.Time
	LastLogin     time.Time // zero when the user never logged in
}

// UserQuery selects users for the administrators' list: by the start of
// the e-mail address (matched literally: % and _ are no wildcards), by
// role and by whether the account is active, each when set.
type UserQuery struct {
	EmailPrefix string // "" selects every address
	Role        *int
	Active      *bool
	Offset      int
	Limit       int // at most this many users; 0 or less: none, only the count
}

// RefreshToken is one row of the refresh-token whitelist: one row per live
// refresh token, grouped by session. Created is when the row was written:
// the session's start, or its last refresh.
type RefreshToken struct {
	JTI     string
	Session string
	UserID  int64
	Enabled bool // false only in rows an earlier version held back until an address was confirmed
	Created time.Time
	Expires time.Time
	IP      string // client address when the row was written, may be ""
	// Started is when the session opened (zero: not known, a row of an
	// earlier version), and UserAgent the User-Agent header of the
	// request that opened it ("" when not recorded). A rotation carries
	// both to the next row.
	Started   time.Time
	UserAgent string
}

// Token is one row of the generic token table: single-use links, MFA
// challenges, pending secrets and failure records, told apart by Purpose.
// Expiry is decided by the caller from Created and a TTL.
type Token struct {
	ID      int64
	UserID  int64
	Purpose string
	Token   string
	Created time.Time
}

// Authenticator is an MFA factor of a user (Type "totp" or "recovery_codes").
// For TOTP, Data holds the encrypted secret and LastStep the last accepted
// time step (0 when none).
type Authenticator struct {
	ID         int64
	UserID     int64
	Type       string
	Data       []byte
	LastStep   int64
	CreatedAt  time.Time
	LastUsedAt time.Time // zero when never used
}

// SocialAccount links an account to its identity at an identity
// provider: the provider's id and its stable subject for the person.
type SocialAccount struct {
	ID        int64
	UserID    int64
	Provider  string
	UID       string
	Created   time.Time
	LastLogin time.Time // zero: never used to sign in
}

// Passkey is a WebAuthn credential of an account: its id and public key,
// the authenticator's signature counter, a name the user chose, and what
// the authenticator said of itself when it was registered.
type Passkey struct {
	ID             int64
	UserID         int64
	CredentialID   []byte
	PublicKey      []byte
	SignCount      uint32
	Name           string
	AAGUID         []byte
	Transports     []string
	UserVerified   bool // the registration verified the user (PIN, biometrics)
	BackupEligible bool // a synced passkey
	BackupState    bool
	Locked         bool // its counter went backwards: it signs in no more
	Created        time.Time
	LastUsed       time.Time // zero: never used
}

// PersonalToken is a personal access token of an account, for scripts:
// only the SHA-256 of its secret is kept (Hash, hex), with the role it
// carries (at most its owner's) and when it stops working.
type PersonalToken struct {
	ID       int64
	UserID   int64
	Name     string
	Hash     string
	Role     int
	Created  time.Time
	Expires  time.Time
	LastUsed time.Time // zero: never used
}

// Store is what a realm needs from its database. Every method is safe for
// concurrent use, honours the context deadline, and every "consume" method is
// one atomic statement (or transaction): under concurrent calls with the same
// argument exactly one caller succeeds.
type Store interface {
	// Users.

	// CreateUser inserts u (u.ID is ignored) and returns the new id.
	// ErrConflict when the e-mail address is taken.
	CreateUser(ctx context.Context, u User) (int64, error)
	UserByID(ctx context.Context, id int64) (User, error)
	UserByEmail(ctx context.Context, email string) (User, error)
	// UserForUpdate reads a user and locks the row until the end of the
	// transaction: a write that depends on what it read goes through
	// InTx, reads with UserForUpdate, then writes in the same transaction,
	// so no concurrent change is lost. It fails when the Store is not
	// bound to a transaction of InTx.
	UserForUpdate(ctx context.Context, id int64) (User, error)

	// Each write below changes only the columns it names and leaves every
	// other column as it is. ErrNotFound when there is no such user.

	// SetLastLogin sets the time of the last login (the zero time clears it).
	SetLastLogin(ctx context.Context, id int64, t time.Time) error
	// SetPasswordHash sets the password hash ("" leaves no usable password).
	SetPasswordHash(ctx context.Context, id int64, hash string) error
	// SetNames sets the first and the last name.
	SetNames(ctx context.Context, id int64, first, last string) error
	SetRole(ctx context.Context, id int64, role int) error
	SetActive(ctx context.Context, id int64, active bool) error
	SetEmailVerified(ctx context.Context, id int64, verified bool) error
	DeleteUser(ctx context.Context, id int64) error
	ListUsers(ctx context.Context) ([]User, error)
	// SearchUsers returns the users q selects, by ascending id, from
	// q.Offset on and at most q.Limit of them, with how many q selects in
	// all.
	SearchUsers(ctx context.Context, q UserQuery) ([]User, int, error)

	// Refresh-token whitelist.

	InsertRefresh(ctx context.Context, rt RefreshToken) error
	// RotateRefresh atomically replaces the row oldJTI with next, which
	// takes the old row's Started and UserAgent (next's are ignored).
	// When no row has oldJTI (replay, logout, forgery), or the user
	// next.UserID is gone or no longer active, nothing changes and it
	// returns ErrNotFound; the caller then ends next.Session with
	// RevokeSession once its transaction is over. When the row exists
	// but is disabled, nothing changes and it returns ErrDisabled.
	//
	// A rotation and the three revocations below exclude each other per
	// user: a revocation that starts while a rotation of one of its rows
	// is in flight also deletes the row that rotation inserts, and a
	// rotation that starts after a revocation finds its row gone. A
	// revocation inside a transaction that rotated may deadlock with
	// another such transaction; hence RevokeSession after it.
	RotateRefresh(ctx context.Context, oldJTI string, next RefreshToken) error
	// DeleteRefresh deletes the user's rows whose jti is jti or whose session
	// is session, and returns how many it deleted.
	DeleteRefresh(ctx context.Context, userID int64, jti, session string) (int, error)
	// RevokeSession deletes every row of a session.
	RevokeSession(ctx context.Context, session string) (int, error)
	// RevokeUserSessions deletes every row of a user.
	RevokeUserSessions(ctx context.Context, userID int64) (int, error)
	// SessionActive reports whether a session still has at least one row.
	SessionActive(ctx context.Context, session string) (bool, error)
	// UserRefreshTokens returns the user's rows that expire at or after
	// t, newest first.
	UserRefreshTokens(ctx context.Context, userID int64, t time.Time) ([]RefreshToken, error)
	// PurgeRefresh deletes rows that expired before t.
	PurgeRefresh(ctx context.Context, t time.Time) (int, error)

	// Generic token table.

	// CreateToken inserts t (t.ID is ignored) and returns the new id.
	CreateToken(ctx context.Context, t Token) (int64, error)
	// CreateTokenWhile inserts t (t.ID is ignored), in one statement,
	// only while a row (purpose, token) created at or after notBefore
	// exists, and returns the new id; ErrNotFound, with nothing
	// inserted, when there is none.
	CreateTokenWhile(ctx context.Context, t Token, purpose, token string, notBefore time.Time) (int64, error)
	// ReplaceToken deletes the user's rows of t.Purpose and inserts t, in
	// one transaction.
	ReplaceToken(ctx context.Context, t Token) (int64, error)
	// FindToken returns the row (purpose, token) created at or after
	// notBefore, without consuming it. An older row is deleted and
	// ErrNotFound returned.
	FindToken(ctx context.Context, purpose, token string, notBefore time.Time) (Token, error)
	// ConsumeToken deletes and returns the row (purpose, token) created at
	// or after notBefore. ErrNotFound when there is none (or another caller
	// consumed it first).
	ConsumeToken(ctx context.Context, purpose, token string, notBefore time.Time) (Token, error)
	// UserTokens returns a user's rows of purpose created at or after
	// notBefore, oldest first.
	UserTokens(ctx context.Context, userID int64, purpose string, notBefore time.Time) ([]Token, error)
	// NewestTokens returns when the user's n newest rows of purpose
	// created at or after notBefore were created, newest first (fewer
	// when there are fewer). It reads at most n rows.
	NewestTokens(ctx context.Context, userID int64, purpose string, notBefore time.Time, n int) ([]time.Time, error)
	// CountTokens counts the rows (purpose, token) created at or after notBefore.
	CountTokens(ctx context.Context, purpose, token string, notBefore time.Time) (int, error)
	// DeleteUserTokens deletes a user's rows of the given purposes (all
	// purposes when none is given) and returns how many it deleted.
	DeleteUserTokens(ctx context.Context, userID int64, purposes ...string) (int, error)
	// DeleteToken deletes the rows (purpose, token).
	DeleteToken(ctx context.Context, purpose, token string) (int, error)
	// PurgeTokens deletes the rows of purpose created before t.
	PurgeTokens(ctx context.Context, purpose string, t time.Time) (int, error)

	// MFA authenticators.

	// CreateAuthenticator inserts a (a.ID is ignored). ErrConflict when the
	// user already has one of that type.
	CreateAuthenticator(ctx context.Context, a Authenticator) (int64, error)
	Authenticators(ctx context.Context, userID int64) ([]Authenticator, error)
	// DeleteAuthenticators deletes the user's authenticators of the given
	// types (all when none is given) and, with recovery_codes, the codes.
	DeleteAuthenticators(ctx context.Context, userID int64, types ...string) (int, error)
	// AdvanceTOTPStep sets the user's TOTP last step to step and last used
	// time to now, only if step is greater than the stored one. It reports
	// whether it did: false means the code was already used (replay).
	AdvanceTOTPStep(ctx context.Context, userID, step int64, now time.Time) (bool, error)
	// ReplaceRecoveryCodes replaces the user's recovery-code hashes.
	ReplaceRecoveryCodes(ctx context.Context, userID int64, hashes []string) error
	// ConsumeRecoveryCode deletes the user's code with this hash and reports
	// whether one was there. Under concurrent calls one caller gets true.
	ConsumeRecoveryCode(ctx context.Context, userID int64, hash string, now time.Time) (bool, error)
	// CountRecoveryCodes counts the user's unused codes.
	CountRecoveryCodes(ctx context.Context, userID int64) (int, error)
	// TOTPAuthenticators returns every user's TOTP authenticator, by
	// ascending id (for re-encrypting their secrets under a new key).
	TOTPAuthenticators(ctx context.Context) ([]Authenticator, error)
	// SwapAuthenticatorData sets the data of authenticator id to data only
	// if it still holds old, and reports whether it did.
	SwapAuthenticatorData(ctx context.Context, id int64, old, data []byte) (bool, error)

	// Social accounts.

	// CreateSocialAccount inserts a (a.ID is ignored) and returns its id;
	// ErrConflict when the provider's subject is linked already.
	CreateSocialAccount(ctx context.Context, a SocialAccount) (int64, error)
	// SocialAccountByUID returns the link of the provider's subject uid;
	// ErrNotFound when there is none.
	SocialAccountByUID(ctx context.Context, provider, uid string) (SocialAccount, error)
	// SocialAccounts returns the user's links, by ascending id.
	SocialAccounts(ctx context.Context, userID int64) ([]SocialAccount, error)
	// DeleteSocialAccount deletes the link id if it is the user's, and
	// reports whether it did.
	DeleteSocialAccount(ctx context.Context, userID, id int64) (bool, error)
	// SetSocialLogin writes the link's last_login only; ErrNotFound when
	// the link is gone.
	SetSocialLogin(ctx context.Context, id int64, at time.Time) error

	// Passkeys.

	// CreatePasskey inserts p (p.ID is ignored) and returns its id;
	// ErrConflict when the credential id is registered already.
	CreatePasskey(ctx context.Context, p Passkey) (int64, error)
	// Passkeys returns the user's passkeys, by ascending id.
	Passkeys(ctx context.Context, userID int64) ([]Passkey, error)
	// PasskeyByCredentialID returns the passkey of a credential id;
	// ErrNotFound when there is none.
	PasskeyByCredentialID(ctx context.Context, credentialID []byte) (Passkey, error)
	// RenamePasskey writes the name of the user's passkey id only, and
	// reports whether there was one.
	RenamePasskey(ctx context.Context, userID, id int64, name string) (bool, error)
	// DeletePasskeys deletes the user's passkeys of the given ids (all of
	// them when none is given) and returns how many it deleted.
	DeletePasskeys(ctx context.Context, userID int64, ids ...int64) (int, error)
	// UsePasskey records a use of passkey id: its counter moves from old
	// to next and last_used to at, only if the counter is still old and
	// the passkey is not locked; it reports whether it did, so of
	// concurrent uses with one counter value exactly one succeeds.
	UsePasskey(ctx context.Context, id int64, old, next uint32, at time.Time) (bool, error)
	// LockPasskey sets the passkey's locked flag only.
	LockPasskey(ctx context.Context, id int64) error

	// Personal access tokens.

	// CreatePersonalToken inserts p (p.ID is ignored) and returns its id;
	// ErrConflict when its hash is taken.
	CreatePersonalToken(ctx context.Context, p PersonalToken) (int64, error)
	// PersonalTokens returns the user's tokens, by ascending id.
	PersonalTokens(ctx context.Context, userID int64) ([]PersonalToken, error)
	// PersonalTokenByHash returns the token of a hash; ErrNotFound when
	// there is none.
	PersonalTokenByHash(ctx context.Context, hash string) (PersonalToken, error)
	// DeletePersonalToken deletes the user's token id, and reports
	// whether there was one.
	DeletePersonalToken(ctx context.Context, userID, id int64) (bool, error)
	// SetPersonalTokenUsed writes the token's last_used only; ErrNotFound
	// when the token is gone.
	SetPersonalTokenUsed(ctx context.Context, id int64, at time.Time) error

	// Settings: small named values shared by every node. Never key
	// material: keys live in Caddy's storage (see caddyauth/keys.go).

	// LoadOrStoreSetting stores value under name unless a value is already
	// there, and returns the stored value (so concurrent first starts agree).
	LoadOrStoreSetting(ctx context.Context, name string, value []byte) ([]byte, error)
	// Setting returns the value stored under name; ErrNotFound when there
	// is none.
	Setting(ctx context.Context, name string) ([]byte, error)
	// DeleteSetting deletes the setting name, if there is one.
	DeleteSetting(ctx context.Context, name string) error

	// InTx runs fn in one transaction: fn must use the Store it is given,
	// and every write it made is undone when fn returns an error.
	InTx(ctx context.Context, fn func(tx Store) error) error
	// CommitUnflushed lets the transaction the Store is bound to commit
	// without waiting for its writes to reach the disk: they are seen by
	// every other transaction from the commit on, as any commit's, and
	// only a crash of the database server soon after it can lose them
	// (PostgreSQL: synchronous_commit off for this transaction). For
	// writes whose loss costs little and whose flush would keep a lock
	// held, such as a refused check's failure row; called before the
	// lock is taken, it adds no round trip while the lock is held. It
	// fails when the Store is not bound to a transaction of InTx.
	CommitUnflushed(ctx context.Context) error
}
