package account

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/jsonform"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Admin is the administrators' API over other accounts ({prefix}/admin/):
// a filtered, paged list of users, one user with its factors, links and
// sessions, and the changes the command line makes (role, activation,
// names, deletion, MFA reset, signing out everywhere).
//
// Every call needs an access token of a live session whose user, as
// stored, is active and holds a role of admin_roles; any other caller is
// refused (401 without a valid token, 403 with one). A change is refused
// when the target outranks the administrator (mayGrant: a superuser
// cannot change staff), when it would give a role the administrator may
// not grant, and when administrators would change their own role, deactivate,
// delete or reset the factors of their own account here. Every change is
// audited as admin_action with the actor's id.
type Admin struct{ *core }

// AdminPageSize is how many users one page of the list holds.
const AdminPageSize = 50

// Messages of the admin API.
const (
	msgAdminNotFound  = "Not found."
	msgInvalidPage    = "Invalid page."
	msgAdminOutranked = "You cannot change a user whose role is higher than your own."
	msgAdminSelf      = "You cannot change your own role or deactivate your own account here."
	msgAdminSelfDel   = "You cannot delete your own account here."
	msgAdminSelfMFA   = "You cannot reset your own second factors here: deactivate them with a code instead."
)

// auditAdminAction is a change an administrator made (action, with the
// target_user_id; user_id is the administrator's).
const auditAdminAction = "admin_action"

// UserFilter is a query of the list: an e-mail prefix, a role and an
// activation, each when set, and the page (from 1). Invalid holds what
// reading the query found wrong; Page below 1 is a page that does not
// exist.
type UserFilter struct {
	EmailPrefix string
	Role        *int
	Active      *bool
	Page        int
	Invalid     FieldErrors
}

// UserPage is one page of the list: its users by ascending id, how many
// users the filter selects in all, the page's number and whether a next
// page exists.
type UserPage struct {
	Users   []User
	Count   int
	Page    int
	HasNext bool
}

// UserDetail is one user as an administrator sees it: the account, the
// types of its MFA authenticators, its passkeys, its links to identity
// providers and its live sessions.
type UserDetail struct {
	User
	Authenticators []string
	Passkeys       []Passkey
	Links          []SocialAccount
	Sessions       []SessionInfo
}

// UserChange is a PATCH of a user: each part applies when its Set is
// true. Form is the body as decoded.
type UserChange struct {
	Form
	Active, SetActive         bool
	Role                      int
	SetRole                   bool
	FirstName, LastName       string
	SetFirstName, SetLastName bool
}

// Authorize refuses the caller of access unless it may use the admin API.
func (rl *Admin) Authorize(ctx context.Context, access string) error {
	_, err := rl.authorize(ctx, access)
	return err
}

// authorize checks the caller of access: a live session, and an active
// user whose stored role is one of admin_roles.
func (rl *Admin) authorize(ctx context.Context, access string) (tokens.Claims, error) {
	c, err := rl.sessions.LiveAccess(ctx, access)
	if err != nil {
		return tokens.Claims{}, err
	}
	_, err = rl.actor(ctx, rl.store, c)
	return c, err
}

// actor reads the administrator of c from st and refuses one who is gone,
// disabled, or no longer holds an admin role.
func (rl *Admin) actor(ctx context.Context, st Store, c tokens.Claims) (User, error) {
	u, err := st.UserByID(ctx, c.NumericUserID())
	if errors.Is(err, ErrNotFound) || (err == nil && !u.IsActive) {
		return User{}, errTokenNotValid(MsgTokenInvalid)
	}
	if err != nil {
		return User{}, err
	}
	if !slices.Contains(rl.policy.AdminRoles, u.Role) {
		return User{}, refuse(Forbidden, MsgPermissionDenied)
	}
	return u, nil
}

// Users returns the page of the list that f asks for, AdminPageSize
// users each; a page beyond the last (but the first) does not exist.
func (rl *Admin) Users(ctx context.Context, access string, f UserFilter) (UserPage, error) {
	if _, err := rl.authorize(ctx, access); err != nil {
		return UserPage{}, err
	}
	if err := f.Invalid.Err(); err != nil {
		return UserPage{}, err
	}
	if f.Page < 1 {
		return UserPage{}, refuse(NotFound, msgInvalidPage)
	}
	// A page whose offset would pass 2^31 is beyond the last one too
	// (and would overflow).
	if f.Page-1 > (1<<31)/AdminPageSize {
		return UserPage{}, refuse(NotFound, msgInvalidPage)
	}
	q := UserQuery{EmailPrefix: NormalizeEmail(f.EmailPrefix), Role: f.Role, Active: f.Active,
		Offset: (f.Page - 1) * AdminPageSize, Limit: AdminPageSize}
	users, n, err := rl.store.SearchUsers(ctx, q)
	if err != nil {
		return UserPage{}, err
	}
	if f.Page > 1 && q.Offset >= n {
		return UserPage{}, refuse(NotFound, msgInvalidPage)
	}
	return UserPage{Users: users, Count: n, Page: f.Page, HasNext: q.Offset+len(users) < n}, nil
}

// User returns user id with its factors, links and sessions.
func (rl *Admin) User(ctx context.Context, access string, id int64) (UserDetail, error) {
	c, err := rl.authorize(ctx, access)
	if err != nil {
		return UserDetail{}, err
	}
	return rl.detail(ctx, c, id)
}

// detail reads user id for c's administrator.
func (rl *Admin) detail(ctx context.Context, c tokens.Claims, id int64) (UserDetail, error) {
	u, err := rl.store.UserByID(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return UserDetail{}, refuse(NotFound, msgAdminNotFound)
	}
	if err != nil {
		return UserDetail{}, err
	}
	d := UserDetail{User: u}
	auths, err := rl.store.Authenticators(ctx, id)
	if err != nil {
		return UserDetail{}, err
	}
	for _, a := range auths {
		d.Authenticators = append(d.Authenticators, a.Type)
	}
	if d.Passkeys, err = rl.store.Passkeys(ctx, id); err != nil {
		return UserDetail{}, err
	}
	if d.Links, err = rl.store.SocialAccounts(ctx, id); err != nil {
		return UserDetail{}, err
	}
	// The administrator's own session is marked when the target is the
	// administrator.
	if d.Sessions, err = rl.sessions.sessionsOf(ctx, id, c.Session); err != nil {
		return UserDetail{}, err
	}
	return d, nil
}

// change runs fn on user id in one transaction, with the administrator
// re-read and the target's row locked, once neither is refused: a target
// that outranks the administrator is (mayGrant).
func (rl *Admin) change(ctx context.Context, c tokens.Claims, id int64, fn func(tx Store, actor, target User) error) error {
	return rl.store.InTx(ctx, func(tx Store) error {
		actor, err := rl.actor(ctx, tx, c)
		if err != nil {
			return err
		}
		target, err := tx.UserForUpdate(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return refuse(NotFound, msgAdminNotFound)
		}
		if err != nil {
			return err
		}
		if target.ID != actor.ID && !mayGrant(actor.Role, target.Role) {
			return refuse(Forbidden, msgAdminOutranked)
		}
		return fn(tx, actor, target)
	})
}

// auditAction writes the admin_action line of action on target by the
// administrator of c.
func (rl *Admin) auditAction(ctx context.Context, c tokens.Claims, action string, target int64, fields ...slog.Attr) {
	attrs := append([]slog.Attr{slog.String("action", action), slog.String("target_user_id", strconv.FormatInt(target, 10))}, fields...)
	rl.audit(ctx, auditAdminAction, c.NumericUserID(), attrs...)
}

// Change applies a PATCH to user id and returns the user as it is then.
// Deactivating ends the user's sessions, links and challenges, as the
// command line's disable does; a new role reaches the user's tokens at
// their next refresh.
func (rl *Admin) Change(ctx context.Context, o Origin, access string, id int64, in UserChange) (UserDetail, error) {
	ctx = withOrigin(ctx, o)
	c, err := rl.authorize(ctx, access)
	if err != nil {
		return UserDetail{}, err
	}
	if in.Refused != nil {
		return UserDetail{}, in.Refused
	}
	var actions []string
	err = rl.change(ctx, c, id, func(tx Store, actor, target User) error {
		self := target.ID == actor.ID
		if self && ((in.SetRole && in.Role != target.Role) || (in.SetActive && !in.Active)) {
			return refuse(Forbidden, msgAdminSelf)
		}
		fe := in.Invalid
		switch {
		case !in.SetRole || fe.Has("role"):
		case in.Role < 0:
			fe.Add("role", msgRoleBelowMinimum)
		case in.Role > maxRole:
			fe.Add("role", msgRoleAboveMaximum)
		case !mayGrant(actor.Role, in.Role):
			fe.Add("role", msgRoleAboveInviter)
		}
		first, last := target.FirstName, target.LastName
		if in.SetFirstName {
			first = in.FirstName
			if utf8.RuneCountInString(first) > 150 {
				fe.Add("first_name", jsonform.MaxLenMessage(150))
			}
		}
		if in.SetLastName {
			last = in.LastName
			if utf8.RuneCountInString(last) > 150 {
				fe.Add("last_name", jsonform.MaxLenMessage(150))
			}
		}
		if err := fe.Err(); err != nil {
			return err
		}
		if in.SetRole && in.Role != target.Role {
			if err := tx.SetRole(ctx, id, in.Role); err != nil {
				return err
			}
			actions = append(actions, "set_role")
		}
		if (in.SetFirstName || in.SetLastName) && (first != target.FirstName || last != target.LastName) {
			if err := tx.SetNames(ctx, id, first, last); err != nil {
				return err
			}
			actions = append(actions, "set_names")
		}
		switch {
		case !in.SetActive || in.Active == target.IsActive:
		case in.Active:
			if err := tx.SetActive(ctx, id, true); err != nil {
				return err
			}
			actions = append(actions, "activate")
		default:
			if err := disableUser(ctx, tx, id); err != nil {
				return err
			}
			actions = append(actions, "deactivate")
		}
		return nil
	})
	if err != nil {
		return UserDetail{}, err
	}
	for _, a := range actions {
		var extra []slog.Attr
		switch a {
		case "set_role":
			extra = append(extra, slog.Int("role", in.Role))
		case "deactivate":
			rl.auditSessionRevoked(ctx, id, "user_disabled")
		}
		rl.auditAction(ctx, c, a, id, extra...)
	}
	return rl.detail(ctx, c, id)
}

// Delete removes user id as every deletion does (deletion.go): in the
// transaction that locked its row, with everything the store keeps of it
// (sessions, factors, links, tokens: the store's DeleteUser cascades); the
// administrator's checks run in that transaction too. Administrators
// cannot delete their own account here. It is audited as account_deleted
// (by admin_api) and as the administrator's action.
func (rl *Admin) Delete(ctx context.Context, o Origin, access string, id int64) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.authorize(ctx, access)
	if err != nil {
		return err
	}
	var email string
	err = rl.change(ctx, c, id, func(tx Store, actor, target User) error {
		if target.ID == actor.ID {
			return refuse(Forbidden, msgAdminSelfDel)
		}
		email = target.Email
		return tx.DeleteUser(ctx, id)
	})
	if err != nil {
		return err
	}
	rl.audit(ctx, auditAccountDeleted, id, slog.String("by", "admin_api"), rl.emailHash(email))
	rl.auditAction(ctx, c, "delete", id)
	return nil
}

// ResetMFA removes user id's TOTP, recovery codes and passkeys and lifts
// its MFA lockout, as the command line's reset-mfa does. Administrators
// cannot reset their own factors here: deactivating them asks for a code.
func (rl *Admin) ResetMFA(ctx context.Context, o Origin, access string, id int64) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.authorize(ctx, access)
	if err != nil {
		return err
	}
	err = rl.change(ctx, c, id, func(tx Store, actor, target User) error {
		if target.ID == actor.ID {
			return refuse(Forbidden, msgAdminSelfMFA)
		}
		return resetFactors(ctx, tx, id)
	})
	if err != nil {
		return err
	}
	rl.auditAction(ctx, c, "reset_mfa", id)
	return nil
}

// LogoutAll ends every session of user id: its refresh tokens die at
// once, and with session_check its access tokens too. On the
// administrator's own account it ends the administrator's sessions, as
// {prefix}/logout-all/ does.
func (rl *Admin) LogoutAll(ctx context.Context, o Origin, access string, id int64) error {
	ctx = withOrigin(ctx, o)
	c, err := rl.authorize(ctx, access)
	if err != nil {
		return err
	}
	err = rl.change(ctx, c, id, func(tx Store, _, _ User) error {
		_, err := tx.RevokeUserSessions(ctx, id)
		return err
	})
	if err != nil {
		return err
	}
	rl.auditSessionRevoked(ctx, id, "admin_logout_all")
	rl.auditAction(ctx, c, "logout_all", id)
	return nil
}
