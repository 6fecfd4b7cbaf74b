package caddyauth

import (
	"context"
	"encoding/json"
	"fmt"
)

// runExportUser prints account.Users.Export of a user as indented JSON.
func runExportUser(ctx context.Context, rl *realm, o userOptions) error {
	ex, err := rl.svc.Users.Export(ctx, o.email)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(o.out)
	enc.SetIndent("", "  ")
	return enc.Encode(ex)
}

// runDeleteUser deletes a user with everything of theirs (no password or
// code is asked of an administrator).
func runDeleteUser(ctx context.Context, rl *realm, o userOptions) error {
	u, err := rl.svc.Users.DeleteByEmail(ctx, o.email)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "deleted user %d <%s> and everything stored of them\n", u.ID, u.Email)
	return nil
}
