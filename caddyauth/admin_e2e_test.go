package caddyauth_test

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"testing"
)

// The admin API ({prefix}/admin/) against a real Caddy on each store.

// adminRoutes are every admin route, each with a body fit for it, on the
// user id.
func adminRoutes(id int64) []struct {
	method, path string
	body         any
} {
	u := "/auth/admin/users/" + strconv.FormatInt(id, 10) + "/"
	return []struct {
		method, path string
		body         any
	}{
		{"GET", "/auth/admin/users/", nil},
		{"GET", "/auth/admin/users/?search=a&role=0&is_active=true&page=1", nil},
		{"GET", u, nil},
		{"PATCH", u, map[string]any{"first_name": "Mallory"}},
		{"DELETE", u, nil},
		{"POST", u + "reset-mfa/", nil},
		{"POST", u + "logout-all/", nil},
		{"GET", "/auth/admin/users/abc/", nil},
		{"POST", u + "unknown/", nil},
	}
}

func TestAdminAPIRolesE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "", defaultBody))
		staff := mustCreateUser(t, "staff@world.com", userPass, 1000)
		super := mustCreateUser(t, "super@world.com", userPass, 900)
		target := mustCreateUser(t, userEmail, userPass, 0)
		mustCreateUser(t, "plain@world.com", userPass, 0)
		plain, _ := s.login("plain@world.com", userPass)
		editor := mustCreateUser(t, "editor@world.com", userPass, 500)
		editorAccess, _ := s.login(editor.Email, userPass)

		// Role 0 and any role outside admin_roles: 403 on every route;
		// no token: 401.
		for _, rt := range adminRoutes(target.ID) {
			for _, access := range []string{plain, editorAccess} {
				r := s.req(rt.method, rt.path, rt.body, bearer(access)).expect(t, 403)
				if r.str("detail") != "You do not have permission to perform this action." {
					t.Fatalf("%s %s: %s", rt.method, rt.path, r.raw)
				}
			}
			s.req(rt.method, rt.path, rt.body).expect(t, 401)
		}
		// The target is untouched.
		superAccess, _ := s.login(super.Email, userPass)
		d := s.get(fmt.Sprintf("/auth/admin/users/%d/", target.ID), bearer(superAccess)).expect(t, 200)
		if d.body["first_name"] != "" || d.body["is_active"] != true {
			t.Fatalf("target after refused calls: %s", d.raw)
		}

		// A superuser cannot make staff, nor change staff.
		r := s.req("PATCH", fmt.Sprintf("/auth/admin/users/%d/", target.ID), map[string]any{"role": 1000}, bearer(superAccess)).expect(t, 400)
		if r.fieldMsg("role") != "You cannot grant a role higher than your own." {
			t.Fatalf("superuser granting staff: %s", r.raw)
		}
		staffURL := fmt.Sprintf("/auth/admin/users/%d/", staff.ID)
		for _, rt := range []struct {
			method, path string
			body         any
		}{{"PATCH", staffURL, map[string]any{"is_active": false}}, {"DELETE", staffURL, nil}, {"POST", staffURL + "reset-mfa/", nil}, {"POST", staffURL + "logout-all/", nil}} {
			r := s.req(rt.method, rt.path, rt.body, bearer(superAccess)).expect(t, 403)
			if r.str("detail") != "You cannot change a user whose role is higher than your own." {
				t.Fatalf("%s %s: %s", rt.method, rt.path, r.raw)
			}
		}
		// Nor their own role or activation.
		superURL := fmt.Sprintf("/auth/admin/users/%d/", super.ID)
		for _, body := range []map[string]any{{"role": 0}, {"is_active": false}} {
			r := s.req("PATCH", superURL, body, bearer(superAccess)).expect(t, 403)
			if r.str("detail") != "You cannot change your own role or deactivate your own account here." {
				t.Fatalf("own change %v: %s", body, r.raw)
			}
		}
		s.req("DELETE", superURL, nil, bearer(superAccess)).expect(t, 403)

		// Staff may make staff, and promote the target to superuser.
		staffAccess, _ := s.login(staff.Email, userPass)
		r = s.req("PATCH", fmt.Sprintf("/auth/admin/users/%d/", target.ID), map[string]any{"role": 900, "first_name": "Person"}, bearer(staffAccess)).expect(t, 200)
		if r.body["role"] != float64(900) || r.body["first_name"] != "Person" {
			t.Fatalf("staff promoting: %s", r.raw)
		}
		// Bad bodies and queries are field errors.
		r = s.req("PATCH", fmt.Sprintf("/auth/admin/users/%d/", target.ID), map[string]any{"is_active": "maybe", "role": "x"}, bearer(staffAccess)).expect(t, 400)
		if r.fieldMsg("is_active") != "Must be a valid boolean." || r.fieldMsg("role") != "A valid integer is required." {
			t.Fatalf("bad body: %s", r.raw)
		}
		r = s.get("/auth/admin/users/?role=x&is_active=maybe", bearer(staffAccess)).expect(t, 400)
		if r.fieldMsg("role") != "Enter a whole number." || r.fieldMsg("is_active") != "Must be a valid boolean." {
			t.Fatalf("bad query: %s", r.raw)
		}
		s.get("/auth/admin/users/?page=9", bearer(staffAccess)).expect(t, 404)
		s.get("/auth/admin/users/99999/", bearer(staffAccess)).expect(t, 404)
		s.get("/auth/admin/users/abc/", bearer(staffAccess)).expect(t, 404)
		s.req("PUT", fmt.Sprintf("/auth/admin/users/%d/", target.ID), nil, bearer(staffAccess)).expect(t, 405)
	})
}

func TestAdminAPIActionsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf, audit := withAuditLog(t, caddyfile(store, "", defaultBody))
		s := startCaddy(t, cf)
		staff := mustCreateUser(t, "staff@world.com", userPass, 1000)
		target := mustCreateUser(t, userEmail, userPass, 0)
		for i := range 60 {
			mustCreateUser(t, fmt.Sprintf("bulk%02d@world.com", i), userPass, 7)
		}
		mustCreateUser(t, "a_b@world.com", userPass, 0)
		mustCreateUser(t, "axb@world.com", userPass, 0)
		admin, _ := s.login(staff.Email, userPass)

		// Pages of 50, with absolute next and previous links, as DRF gives them.
		p1 := s.get("/auth/admin/users/?role=7", bearer(admin)).expect(t, 200)
		if p1.body["count"] != float64(60) || len(p1.body["results"].([]any)) != 50 || p1.body["previous"] != nil {
			t.Fatalf("first page: count %v, previous %v", p1.body["count"], p1.body["previous"])
		}
		next, _ := p1.body["next"].(string)
		if next != testBase+"/auth/admin/users/?page=2&role=7" {
			t.Fatalf("next = %q", next)
		}
		u, _ := url.Parse(next)
		p2 := s.get(u.RequestURI(), bearer(admin)).expect(t, 200)
		if len(p2.body["results"].([]any)) != 10 || p2.body["next"] != nil || p2.body["previous"] != testBase+"/auth/admin/users/?role=7" {
			t.Fatalf("second page: next %v, previous %v", p2.body["next"], p2.body["previous"])
		}
		first := p1.body["results"].([]any)[0].(map[string]any)
		if first["email"] != "bulk00@world.com" || first["role"] != float64(7) || first["is_active"] != true || first["last_login"] != nil {
			t.Fatalf("first user: %v", first)
		}
		// The prefix is literal: _ matches only itself.
		r := s.get("/auth/admin/users/?search=A_", bearer(admin)).expect(t, 200)
		if r.body["count"] != float64(1) || r.body["results"].([]any)[0].(map[string]any)["email"] != "a_b@world.com" {
			t.Fatalf("search a_: %s", r.raw)
		}

		// The detail shows the target's sessions; deactivating ends them:
		// the refresh token dies.
		_, refresh := s.login(userEmail, userPass)
		targetURL := fmt.Sprintf("/auth/admin/users/%d/", target.ID)
		d := s.get(targetURL, bearer(admin)).expect(t, 200)
		if len(d.body["sessions"].([]any)) != 1 || len(d.body["authenticators"].([]any)) != 0 || d.body["email"] != userEmail {
			t.Fatalf("detail: %s", d.raw)
		}
		r = s.req("PATCH", targetURL, map[string]any{"is_active": false}, bearer(admin)).expect(t, 200)
		if r.body["is_active"] != false || len(r.body["sessions"].([]any)) != 0 {
			t.Fatalf("deactivated: %s", r.raw)
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		s.post("/auth/login/", map[string]string{"email": userEmail, "password": userPass}).expect(t, 401)
		r = s.get("/auth/admin/users/?is_active=false", bearer(admin)).expect(t, 200)
		if r.body["count"] != float64(1) {
			t.Fatalf("inactive users: %s", r.raw)
		}
		s.req("PATCH", targetURL, map[string]any{"is_active": true}, bearer(admin)).expect(t, 200)

		// Signing out everywhere kills the refresh token too.
		_, refresh = s.login(userEmail, userPass)
		s.post(targetURL+"logout-all/", nil, bearer(admin)).expect(t, 204)
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		s.post(targetURL+"reset-mfa/", nil, bearer(admin)).expect(t, 204)

		// Deleting: 204, then no row of the user is left, and its address
		// is free.
		_, refresh = s.login(userEmail, userPass)
		db := storeDB(t)
		if n := userRows(t, db, target.ID, userTables...); n["users"] != 1 || n["refresh_tokens"] == 0 {
			t.Fatalf("rows of the user before the deletion: %v", n)
		}
		s.req("DELETE", targetURL, nil, bearer(admin)).expect(t, 204)
		for table, n := range userRows(t, db, target.ID, userTables...) {
			if n != 0 {
				t.Errorf("%d rows of the deleted user left in %s", n, table)
			}
		}
		s.get(targetURL, bearer(admin)).expect(t, 404)
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 401)
		mustCreateUser(t, userEmail, userPass, 0)

		// Each change is audited with the administrator and the target.
		var actions []string
		for _, l := range audit() {
			if l["event"] != "admin_action" {
				continue
			}
			if l["user_id"] != strconv.FormatInt(staff.ID, 10) || l["target_user_id"] != strconv.FormatInt(target.ID, 10) {
				t.Fatalf("admin_action line %v: want actor %d, target %d", l, staff.ID, target.ID)
			}
			actions = append(actions, l["action"].(string))
		}
		if want := []string{"deactivate", "activate", "logout_all", "reset_mfa", "delete"}; !slices.Equal(actions, want) {
			t.Fatalf("audited actions %q, want %q", actions, want)
		}
	})
}

func TestAdminRolesOptionE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, "admin_roles 500", defaultBody))
		mustCreateUser(t, "staff@world.com", userPass, 1000)
		mustCreateUser(t, "editor@world.com", userPass, 500)
		target := mustCreateUser(t, userEmail, userPass, 0)
		staff, _ := s.login("staff@world.com", userPass)
		editor, _ := s.login("editor@world.com", userPass)
		// Staff is no administrator when admin_roles leaves it out; role
		// 500 is, and grants at most itself.
		s.get("/auth/admin/users/", bearer(staff)).expect(t, 403)
		if r := s.get("/auth/admin/users/", bearer(editor)).expect(t, 200); r.body["count"] != float64(3) {
			t.Fatalf("list: %s", r.raw)
		}
		u := fmt.Sprintf("/auth/admin/users/%d/", target.ID)
		s.req("PATCH", u, map[string]any{"role": 900}, bearer(editor)).expect(t, 400)
		s.req("PATCH", u, map[string]any{"role": 500}, bearer(editor)).expect(t, 200)
	})
}
