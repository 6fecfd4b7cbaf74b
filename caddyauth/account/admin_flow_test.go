package account_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/coretest"
)

// The administrators' API (admin.go).

// adminUser creates an account of role and signs it in.
func adminUser(t *testing.T, rl *coretest.Realm, email string, role int) (account.User, string) {
	t.Helper()
	u, err := rl.Users.Create(ctx, email, password, role)
	if err != nil {
		t.Fatal(err)
	}
	return u, signIn(t, rl, email).Access
}

// wantDetail wants a refusal of kind with detail.
func wantDetail(t *testing.T, err error, kind account.Kind, detail string) {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) || r.Kind != kind || r.Detail != detail {
		t.Fatalf("got %v, want a refusal of kind %d: %q", err, kind, detail)
	}
}

// wantField wants an Invalid refusal with msg on field.
func wantField(t *testing.T, err error, field, msg string) {
	t.Helper()
	var r *account.Refusal
	if !errors.As(err, &r) || r.Kind != account.Invalid || !slices.Contains(r.Fields[field], msg) {
		t.Fatalf("got %v, want %q on %s", err, msg, field)
	}
}

// everyAdminCall runs each admin operation on target with access.
func everyAdminCall(rl *coretest.Realm, access string, target int64) map[string]error {
	_, list := rl.Admin.Users(ctx, access, account.UserFilter{Page: 1})
	_, get := rl.Admin.User(ctx, access, target)
	_, patch := rl.Admin.Change(ctx, origin, access, target, account.UserChange{FirstName: "X", SetFirstName: true})
	return map[string]error{
		"authorize":  rl.Admin.Authorize(ctx, access),
		"list":       list,
		"get":        get,
		"patch":      patch,
		"delete":     rl.Admin.Delete(ctx, origin, access, target),
		"reset-mfa":  rl.Admin.ResetMFA(ctx, origin, access, target),
		"logout-all": rl.Admin.LogoutAll(ctx, origin, access, target),
	}
}

func TestAdminRefusesOtherCallers(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	target := newUser(t, rl, "target@example.com")
	_, plain := adminUser(t, rl, "plain@example.com", account.RoleUser)
	_, custom := adminUser(t, rl, "editor@example.com", 500)
	for name, err := range everyAdminCall(rl, plain, target.ID) {
		t.Run("role 0 "+name, func(t *testing.T) { wantDetail(t, err, account.Forbidden, account.MsgPermissionDenied) })
	}
	for name, err := range everyAdminCall(rl, custom, target.ID) {
		t.Run("role 500 "+name, func(t *testing.T) { wantDetail(t, err, account.Forbidden, account.MsgPermissionDenied) })
	}
	for name, err := range everyAdminCall(rl, "", target.ID) {
		t.Run("no token "+name, func(t *testing.T) { wantKind(t, err, account.Unauthenticated) })
	}

	// A staff member whose session ended, who was disabled or demoted is
	// refused too: the role is the stored one, not the token's.
	_, ended := adminUser(t, rl, "ended@example.com", account.RoleStaff)
	if err := rl.Sessions.LogoutAll(ctx, origin, ended); err != nil {
		t.Fatal(err)
	}
	wantKind(t, rl.Admin.Authorize(ctx, ended), account.Unauthenticated)
	demoted, demotedAccess := adminUser(t, rl, "demoted@example.com", account.RoleStaff)
	if err := rl.Admin.Authorize(ctx, demotedAccess); err != nil {
		t.Fatalf("staff refused: %v", err)
	}
	if _, err := rl.Users.SetRole(ctx, demoted.Email, account.RoleUser); err != nil {
		t.Fatal(err)
	}
	wantDetail(t, rl.Admin.Authorize(ctx, demotedAccess), account.Forbidden, account.MsgPermissionDenied)
	if _, err := rl.Users.SetRole(ctx, demoted.Email, account.RoleStaff); err != nil {
		t.Fatal(err)
	}
	if err := rl.Store.SetActive(ctx, demoted.ID, false); err != nil {
		t.Fatal(err)
	}
	wantKind(t, rl.Admin.Authorize(ctx, demotedAccess), account.Unauthenticated)

	// Nothing was changed by the refused calls.
	u, err := rl.Store.UserByID(ctx, target.ID)
	if err != nil || u.FirstName != "" || !u.IsActive {
		t.Fatalf("target after refused calls: %+v, %v", u, err)
	}

	// admin_roles names who may: with 500 in it, the editor may.
	rl = coretest.New(t, account.Config{AdminRoles: []int{500}})
	_, custom = adminUser(t, rl, "editor@example.com", 500)
	_, staff := adminUser(t, rl, "staff@example.com", account.RoleStaff)
	if err := rl.Admin.Authorize(ctx, custom); err != nil {
		t.Fatalf("role 500 in admin_roles refused: %v", err)
	}
	wantDetail(t, rl.Admin.Authorize(ctx, staff), account.Forbidden, account.MsgPermissionDenied)
}

func TestAdminListFiltersAndPages(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	_, access := adminUser(t, rl, "admin@example.com", account.RoleSuperuser)
	for i := range 120 {
		u := account.User{Email: fmt.Sprintf("user%03d@example.com", i), IsActive: i%3 != 0, DateJoined: rl.Clock.Now()}
		if i%10 == 0 {
			u.Role = 7
		}
		if _, err := rl.Store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	list := func(f account.UserFilter) account.UserPage {
		t.Helper()
		p, err := rl.Admin.Users(ctx, access, f)
		if err != nil {
			t.Fatalf("list %+v: %v", f, err)
		}
		return p
	}
	// 121 users: three pages of 50, 50 and 21, by ascending id.
	var ids []int64
	for page := 1; page <= 3; page++ {
		p := list(account.UserFilter{Page: page})
		if p.Count != 121 || p.HasNext != (page < 3) || len(p.Users) != []int{50, 50, 21}[page-1] {
			t.Fatalf("page %d: count %d, %d users, next %v", page, p.Count, len(p.Users), p.HasNext)
		}
		for _, u := range p.Users {
			ids = append(ids, u.ID)
		}
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 121 {
		t.Fatalf("ids over the pages not ascending and distinct: %v", ids)
	}
	_, err := rl.Admin.Users(ctx, access, account.UserFilter{Page: 4})
	wantDetail(t, err, account.NotFound, "Invalid page.")
	_, err = rl.Admin.Users(ctx, access, account.UserFilter{Page: 0})
	wantDetail(t, err, account.NotFound, "Invalid page.")

	seven, inactive := 7, false
	p := list(account.UserFilter{Role: &seven, Page: 1})
	if p.Count != 12 {
		t.Fatalf("role 7: %d users, want 12", p.Count)
	}
	p = list(account.UserFilter{Role: &seven, Active: &inactive, Page: 1})
	if p.Count != 4 { // 0, 30, 60, 90
		t.Fatalf("role 7 inactive: %d users, want 4", p.Count)
	}
	p = list(account.UserFilter{EmailPrefix: "USER11", Page: 1})
	if p.Count != 10 || p.Users[0].Email != "user110@example.com" {
		t.Fatalf("prefix user11: %d users, first %+v", p.Count, p.Users)
	}
	// The filter's own errors come after the permission check.
	_, err = rl.Admin.Users(ctx, access, account.UserFilter{Page: 1, Invalid: account.FieldErrors{"role": {"Enter a whole number."}}})
	wantField(t, err, "role", "Enter a whole number.")
	// An empty first page is a page.
	if p := list(account.UserFilter{EmailPrefix: "nobody", Page: 1}); p.Count != 0 || len(p.Users) != 0 || p.HasNext {
		t.Fatalf("empty list: %+v", p)
	}
}

func TestAdminDetail(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	admin, access := adminUser(t, rl, "admin@example.com", account.RoleStaff)
	target := newUser(t, rl, "target@example.com")
	p := signIn(t, rl, "target@example.com")
	enrol(t, rl, p.Access)
	d, err := rl.Admin.User(ctx, access, target.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(d.Authenticators)
	if d.Email != target.Email || !slices.Equal(d.Authenticators, []string{"recovery_codes", "totp"}) || len(d.Sessions) != 1 || d.Sessions[0].Current {
		t.Fatalf("detail: %+v", d)
	}
	// The administrator's own session is the current one of its detail.
	if d, err = rl.Admin.User(ctx, access, admin.ID); err != nil || len(d.Sessions) != 1 || !d.Sessions[0].Current {
		t.Fatalf("own detail: %+v, %v", d, err)
	}
	_, err = rl.Admin.User(ctx, access, 99999)
	wantDetail(t, err, account.NotFound, "Not found.")
}

func TestAdminRoleBoundaries(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	staff, staffAccess := adminUser(t, rl, "staff@example.com", account.RoleStaff)
	super, superAccess := adminUser(t, rl, "super@example.com", account.RoleSuperuser)
	other := newUser(t, rl, "other@example.com")
	setRole := func(access string, id int64, role int) error {
		_, err := rl.Admin.Change(ctx, origin, access, id, account.UserChange{Role: role, SetRole: true})
		return err
	}
	role := func(id int64) int {
		u, err := rl.Store.UserByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return u.Role
	}

	// A superuser never makes staff, and never touches staff.
	wantField(t, setRole(superAccess, other.ID, account.RoleStaff), "role", "You cannot grant a role higher than your own.")
	wantDetail(t, setRole(superAccess, staff.ID, account.RoleUser), account.Forbidden, "You cannot change a user whose role is higher than your own.")
	for name, err := range map[string]error{
		"delete":     rl.Admin.Delete(ctx, origin, superAccess, staff.ID),
		"reset-mfa":  rl.Admin.ResetMFA(ctx, origin, superAccess, staff.ID),
		"logout-all": rl.Admin.LogoutAll(ctx, origin, superAccess, staff.ID),
	} {
		t.Log(name)
		wantDetail(t, err, account.Forbidden, "You cannot change a user whose role is higher than your own.")
	}
	if role(other.ID) != account.RoleUser || role(staff.ID) != account.RoleStaff {
		t.Fatal("a refused change changed a role")
	}
	// A superuser may make a superuser, or a project role; staff may make staff.
	if err := setRole(superAccess, other.ID, account.RoleSuperuser); err != nil || role(other.ID) != account.RoleSuperuser {
		t.Fatalf("superuser making a superuser: %v", err)
	}
	if err := setRole(superAccess, other.ID, 42); err != nil || role(other.ID) != 42 {
		t.Fatalf("superuser giving role 42: %v", err)
	}
	if err := setRole(staffAccess, other.ID, account.RoleStaff); err != nil || role(other.ID) != account.RoleStaff {
		t.Fatalf("staff making staff: %v", err)
	}
	// Staff may demote a superuser; out-of-range roles are field errors.
	if err := setRole(staffAccess, super.ID, account.RoleUser); err != nil || role(super.ID) != account.RoleUser {
		t.Fatalf("staff demoting a superuser: %v", err)
	}
	wantField(t, setRole(staffAccess, other.ID, -1), "role", "Ensure this value is greater than or equal to 0.")
	wantField(t, setRole(staffAccess, other.ID, 40000), "role", "Ensure this value is less than or equal to 32767.")

	// The demoted superuser is no administrator any more.
	wantDetail(t, rl.Admin.Authorize(ctx, superAccess), account.Forbidden, account.MsgPermissionDenied)

	// An administrator of a project role manages only its own rank and 0.
	rl = coretest.New(t, account.Config{AdminRoles: []int{500}})
	_, editor := adminUser(t, rl, "editor@example.com", 500)
	plain := newUser(t, rl, "plain@example.com")
	high := newUser(t, rl, "high@example.com")
	if _, err := rl.Users.SetRole(ctx, high.Email, 600); err != nil {
		t.Fatal(err)
	}
	wantField(t, setRole(editor, plain.ID, 600), "role", "You cannot grant a role higher than your own.")
	if err := setRole(editor, plain.ID, 500); err != nil {
		t.Fatalf("role 500 granting 500: %v", err)
	}
	wantDetail(t, setRole(editor, high.ID, 0), account.Forbidden, "You cannot change a user whose role is higher than your own.")
}

func TestAdminSelfProtection(t *testing.T) {
	rl := coretest.New(t, account.Config{})
	admin, access := adminUser(t, rl, "admin@example.com", account.RoleStaff)
	change := func(in account.UserChange) error {
		_, err := rl.Admin.Change(ctx, origin, access, admin.ID, in)
		return err
	}
	const self = "You cannot change your own role or deactivate your own account here."
	wantDetail(t, change(account.UserChange{Role: account.RoleSuperuser, SetRole: true}), account.Forbidden, self)
	wantDetail(t, change(account.UserChange{Active: false, SetActive: true}), account.Forbidden, self)
	wantDetail(t, rl.Admin.Delete(ctx, origin, access, admin.ID), account.Forbidden, "You cannot delete your own account here.")
	wantKind(t, rl.Admin.ResetMFA(ctx, origin, access, admin.ID), account.Forbidden)
	// Unchanged values and the names are fine.
	if err := change(account.UserChange{Role: account.RoleStaff, SetRole: true, Active: true, SetActive: true, FirstName: "Ada", SetFirstName: true}); err != nil {
		t.Fatalf("a change of one's names: %v", err)
	}
	u, err := rl.Store.UserByID(ctx, admin.ID)
	if err != nil || u.Role != account.RoleStaff || !u.IsActive || u.FirstName != "Ada" {
		t.Fatalf("admin after own changes: %+v, %v", u, err)
	}
	if n := len(rl.Audit.Events("admin_action")); n != 1 {
		t.Fatalf("%d admin_action lines, want 1 (set_names)", n)
	}
}

func TestAdminDisableDeleteAndSessions(t *testing.T) {
	rl := coretest.New(t, account.Config{MFA: account.MFAOptional})
	admin, access := adminUser(t, rl, "admin@example.com", account.RoleSuperuser)
	target := newUser(t, rl, "target@example.com")
	p := signIn(t, rl, "target@example.com")

	// Deactivating ends the sessions: the refresh token dies.
	d, err := rl.Admin.Change(ctx, origin, access, target.ID, account.UserChange{Active: false, SetActive: true, LastName: "Doe", SetLastName: true})
	if err != nil || d.IsActive || d.LastName != "Doe" || len(d.Sessions) != 0 {
		t.Fatalf("deactivating: %+v, %v", d, err)
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, p.Refresh, 0); err == nil {
		t.Fatal("a deactivated user's refresh token still works")
	}
	if _, err := rl.Sessions.Login(ctx, origin, target.Email, password); err == nil {
		t.Fatal("a deactivated user signs in")
	}
	if d, err = rl.Admin.Change(ctx, origin, access, target.ID, account.UserChange{Active: true, SetActive: true}); err != nil || !d.IsActive {
		t.Fatalf("activating: %+v, %v", d, err)
	}

	// Signing out everywhere.
	p = signIn(t, rl, "target@example.com")
	if err := rl.Admin.LogoutAll(ctx, origin, access, target.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, p.Refresh, 0); err == nil {
		t.Fatal("refresh after logout-all")
	}

	// Resetting the factors.
	p = signIn(t, rl, "target@example.com")
	enrol(t, rl, p.Access)
	if err := rl.Admin.ResetMFA(ctx, origin, access, target.ID); err != nil {
		t.Fatal(err)
	}
	if auths, err := rl.Store.Authenticators(ctx, target.ID); err != nil || len(auths) != 0 {
		t.Fatalf("authenticators after reset: %v, %v", auths, err)
	}

	// Deleting removes the user and its sessions.
	if err := rl.Admin.Delete(ctx, origin, access, target.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := rl.Store.UserByID(ctx, target.ID); !errors.Is(err, account.ErrNotFound) {
		t.Fatalf("deleted user read back: %v", err)
	}
	if _, err := rl.Sessions.Refresh(ctx, origin, p.Refresh, 0); err == nil {
		t.Fatal("a deleted user's refresh token still works")
	}
	wantDetail(t, rl.Admin.Delete(ctx, origin, access, target.ID), account.NotFound, "Not found.")
	if del := rl.Audit.Events("account_deleted"); len(del) != 1 || del[0].Attrs["user_id"] != strconv.FormatInt(target.ID, 10) || del[0].Attrs["by"] != "admin_api" {
		t.Fatalf("account_deleted lines: %+v", del)
	}

	// Every change is audited with the actor and the target.
	var got []string
	for _, r := range rl.Audit.Events("admin_action") {
		if r.Attrs["user_id"] != strconv.FormatInt(admin.ID, 10) || r.Attrs["target_user_id"] != strconv.FormatInt(target.ID, 10) {
			t.Fatalf("admin_action line %+v: want actor %d, target %d", r, admin.ID, target.ID)
		}
		got = append(got, r.Attrs["action"])
	}
	want := []string{"set_names", "deactivate", "activate", "logout_all", "reset_mfa", "delete"}
	if !slices.Equal(got, want) {
		t.Fatalf("admin actions %q, want %q", got, want)
	}
}
