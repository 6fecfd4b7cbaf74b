// Package caddyjwtallauth registers every module of caddy-jwt-allauth, so
// that `xcaddy build --with github.com/caddy-jwt-allauth/caddy-jwt-allauth`
// gives a Caddy with the account endpoints, the guard, both stores and the
// Redis rate limiter.
package caddyjwtallauth

import (
	// The app, the endpoints handler, the guard and the CLI commands.
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	// Store backends.
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/postgres"
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/sqlite"
	// Rate limiter backends.
	_ "github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/redislimit"
)
