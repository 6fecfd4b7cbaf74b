// Command caddy is Caddy with the standard modules and this plugin, built
// from this module's go.mod (the Caddy version xcaddy.json names). The
// bench scripts use it when xcaddy cannot build (for example when the
// module proxy refuses to list this not-yet-published module).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
