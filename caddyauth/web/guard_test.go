package web

import "testing"

// sameHeader answers as comparing headerKeys does, whatever the name.
func TestSameHeader(t *testing.T) {
	names := []string{"X-User-Id", "x-user-id", "X_User_Id", "X-User_id", "X-User-Ids", "X-User-Ix", "X-User", "",
		"X-Ünicode", "x-ünicode", "X-ÜNICODE", "X-\xff", "\u212a-User-Id", "İd", "i̇d"}
	for _, want := range []string{"X-User-Id", "x_user_id", "K-User-Id", "X-Ünicode", "İd", "id"} {
		key := headerKey(want)
		for _, k := range names {
			if got := sameHeader(k, key); got != (headerKey(k) == key) {
				t.Errorf("sameHeader(%q, %q) = %v", k, key, got)
			}
		}
	}
}
