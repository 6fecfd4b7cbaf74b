// Command caddy is Caddy with its standard modules and caddy-jwt-allauth,
// built from this checkout: `go run ./cmd/caddy run --config
// Caddyfile.example`. For production builds use xcaddy (see README).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func main() {
	caddycmd.Main()
}
