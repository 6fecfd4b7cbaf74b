package account

import (
	"context"
	"time"
)

// Export is what the store keeps of one account, as `caddy jwt-allauth
// export-user` prints it: the profile, its flags and dates, its linked
// providers, passkeys, live sessions, second factors and personal access
// tokens. It holds no
// password hash, TOTP secret, recovery code, key, credential id, token
// or session id: what would let its reader sign in stays out.
type Export struct {
	ID                  int64             `json:"id"`
	Email               string            `json:"email"`
	FirstName           string            `json:"first_name"`
	LastName            string            `json:"last_name"`
	Role                int               `json:"role"`
	IsActive            bool              `json:"is_active"`
	EmailVerified       bool              `json:"email_verified"`
	HasUsablePassword   bool              `json:"has_usable_password"`
	DateJoined          time.Time         `json:"date_joined"`
	LastLogin           *time.Time        `json:"last_login"`
	SocialAccounts      []ExportedLink    `json:"social_accounts"`
	Passkeys            []ExportedPasskey `json:"passkeys"`
	Sessions            []ExportedSession `json:"sessions"`
	Authenticators      []ExportedFactor  `json:"authenticators"`
	RecoveryCodesUnused int               `json:"recovery_codes_unused"`
	PersonalTokens      []ExportedToken   `json:"personal_tokens"`
}

// ExportedToken is a personal access token of an Export, never its
// secret or hash.
type ExportedToken struct {
	Name     string     `json:"name"`
	Role     int        `json:"role"`
	Created  time.Time  `json:"created"`
	Expires  time.Time  `json:"expires"`
	LastUsed *time.Time `json:"last_used"`
}

// ExportedLink is a linked identity of an Export.
type ExportedLink struct {
	Provider  string     `json:"provider"`
	UID       string     `json:"uid"`
	Created   time.Time  `json:"created"`
	LastLogin *time.Time `json:"last_login"`
}

// ExportedPasskey is a passkey of an Export, without its key or id.
type ExportedPasskey struct {
	Name         string     `json:"name"`
	Created      time.Time  `json:"created"`
	LastUsed     *time.Time `json:"last_used"`
	Synced       bool       `json:"synced"`
	UserVerified bool       `json:"user_verified"`
	Locked       bool       `json:"locked"`
	Transports   []string   `json:"transports"`
}

// ExportedSession is a live session of an Export, as its owner's list
// shows it but without the handle.
type ExportedSession struct {
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used"`
	Expires   time.Time `json:"expires"`
	IP        string    `json:"ip"`
	UserAgent string    `json:"user_agent"`
}

// ExportedFactor is a second factor of an Export: its type and dates,
// never its data.
type ExportedFactor struct {
	Type     string     `json:"type"`
	Created  time.Time  `json:"created"`
	LastUsed *time.Time `json:"last_used"`
}

// optionalTime is t, or nil for the zero time (JSON null).
func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// Export returns what the store keeps of the account of email.
func (rl *Users) Export(ctx context.Context, email string) (Export, error) {
	u, err := rl.lookup(ctx, email)
	if err != nil {
		return Export{}, err
	}
	out := Export{
		ID: u.ID, Email: u.Email, FirstName: u.FirstName, LastName: u.LastName, Role: u.Role,
		IsActive: u.IsActive, EmailVerified: u.EmailVerified, HasUsablePassword: usablePassword(u),
		DateJoined: u.DateJoined.UTC(), LastLogin: optionalTime(u.LastLogin),
		SocialAccounts: []ExportedLink{}, Passkeys: []ExportedPasskey{},
		Sessions: []ExportedSession{}, Authenticators: []ExportedFactor{}, PersonalTokens: []ExportedToken{},
	}
	links, err := rl.store.SocialAccounts(ctx, u.ID)
	if err != nil {
		return Export{}, err
	}
	for _, a := range links {
		out.SocialAccounts = append(out.SocialAccounts, ExportedLink{
			Provider: a.Provider, UID: a.UID, Created: a.Created.UTC(), LastLogin: optionalTime(a.LastLogin)})
	}
	keys, err := rl.store.Passkeys(ctx, u.ID)
	if err != nil {
		return Export{}, err
	}
	for _, p := range keys {
		out.Passkeys = append(out.Passkeys, ExportedPasskey{
			Name: p.Name, Created: p.Created.UTC(), LastUsed: optionalTime(p.LastUsed), Synced: p.BackupEligible,
			UserVerified: p.UserVerified, Locked: p.Locked, Transports: p.Transports})
	}
	rows, err := rl.store.UserRefreshTokens(ctx, u.ID, rl.now())
	if err != nil {
		return Export{}, err
	}
	seen := map[string]bool{}
	for _, rt := range rows { // newest first: a session's newest row
		if seen[rt.Session] {
			continue
		}
		seen[rt.Session] = true
		started := rt.Started
		if started.IsZero() {
			started = rt.Created
		}
		out.Sessions = append(out.Sessions, ExportedSession{
			Created: started.UTC(), LastUsed: rt.Created.UTC(), Expires: rt.Expires.UTC(), IP: rt.IP, UserAgent: rt.UserAgent})
	}
	auths, err := rl.store.Authenticators(ctx, u.ID)
	if err != nil {
		return Export{}, err
	}
	for _, a := range auths {
		out.Authenticators = append(out.Authenticators, ExportedFactor{
			Type: a.Type, Created: a.CreatedAt.UTC(), LastUsed: optionalTime(a.LastUsedAt)})
	}
	if out.RecoveryCodesUnused, err = rl.store.CountRecoveryCodes(ctx, u.ID); err != nil {
		return Export{}, err
	}
	toks, err := rl.store.PersonalTokens(ctx, u.ID)
	if err != nil {
		return Export{}, err
	}
	for _, tk := range toks {
		out.PersonalTokens = append(out.PersonalTokens, ExportedToken{
			Name: tk.Name, Role: tk.Role, Created: tk.Created.UTC(), Expires: tk.Expires.UTC(), LastUsed: optionalTime(tk.LastUsed)})
	}
	return out, nil
}
