package storetest

import (
	"slices"
	"testing"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// testSearchUsers checks the administrators' filtered, paged list: the
// filters alone and together, the order, the pages and the count, and a
// prefix whose % and _ match only themselves.
func testSearchUsers(t *testing.T, s account.Store) {
	c := ctx(t)
	emails := []string{
		"ann@example.com", "anna@example.com", "bob@example.com",
		"a_b@example.com", "axb@example.com", "a%c@example.com", "abc@example.com",
		`a\d@example.com`,
	}
	ids := map[string]int64{}
	for _, e := range emails {
		ids[e] = mustUser(t, s, e)
	}
	must(t, "SetRole", s.SetRole(c, ids["anna@example.com"], account.RoleSuperuser))
	must(t, "SetRole", s.SetRole(c, ids["bob@example.com"], account.RoleSuperuser))
	must(t, "SetActive", s.SetActive(c, ids["ann@example.com"], false))

	role, inactive := account.RoleSuperuser, false
	search := func(q account.UserQuery) ([]string, int) {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 100
		}
		users, n, err := s.SearchUsers(c, q)
		must(t, "SearchUsers", err)
		var got []string
		for i, u := range users {
			if i > 0 && users[i-1].ID >= u.ID {
				t.Fatalf("SearchUsers(%+v): ids not ascending: %+v", q, users)
			}
			got = append(got, u.Email)
		}
		return got, n
	}
	for _, tc := range []struct {
		q    account.UserQuery
		want []string
	}{
		{account.UserQuery{}, emails},
		{account.UserQuery{EmailPrefix: "ann"}, []string{"ann@example.com", "anna@example.com"}},
		{account.UserQuery{EmailPrefix: " ANN"}, []string{"ann@example.com", "anna@example.com"}},
		{account.UserQuery{EmailPrefix: "a_"}, []string{"a_b@example.com"}},
		{account.UserQuery{EmailPrefix: "a%"}, []string{"a%c@example.com"}},
		{account.UserQuery{EmailPrefix: `a\`}, []string{`a\d@example.com`}},
		{account.UserQuery{EmailPrefix: "nobody"}, nil},
		{account.UserQuery{Role: &role}, []string{"anna@example.com", "bob@example.com"}},
		{account.UserQuery{Active: &inactive}, []string{"ann@example.com"}},
		{account.UserQuery{EmailPrefix: "an", Role: &role}, []string{"anna@example.com"}},
	} {
		got, n := search(tc.q)
		if !slices.Equal(got, tc.want) || n != len(tc.want) {
			t.Errorf("SearchUsers(%+v) = %q (count %d), want %q", tc.q, got, n, tc.want)
		}
	}

	// Pages: three by three, the last one short, the count always all.
	var all []string
	for off := 0; off < len(emails)+3; off += 3 {
		got, n := search(account.UserQuery{Offset: off, Limit: 3})
		wantInt(t, "count", n, len(emails))
		if len(got) > 3 {
			t.Fatalf("page at %d has %d users", off, len(got))
		}
		all = append(all, got...)
	}
	if !slices.Equal(all, emails) {
		t.Fatalf("pages = %q, want %q", all, emails)
	}
	if got, n := search(account.UserQuery{Limit: -1}); got != nil || n != len(emails) {
		t.Fatalf("no limit = %q (count %d), want only the count", got, n)
	}
}
