package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/passwords"
)

// createUser adds an active account with a verified address, as an
// administrator does from the command line.
func (rl *realm) createUser(ctx context.Context, email, password string, role int) (account.User, error) {
	email = normalizeEmail(email)
	if !validEmail(email) {
		return account.User{}, fmt.Errorf("%q is not a valid e-mail address", email)
	}
	if msgs := passwords.Validate(password, email); len(msgs) > 0 {
		return account.User{}, errors.New(strings.Join(msgs, " "))
	}
	hash, err := rl.hasher.hash(ctx, password)
	if err != nil {
		return account.User{}, err
	}
	u := account.User{
		Email:         email,
		PasswordHash:  hash,
		Role:          role,
		IsActive:      true,
		EmailVerified: true,
		DateJoined:    rl.now(),
	}
	u.ID, err = rl.store.CreateUser(ctx, u)
	if errors.Is(err, account.ErrConflict) {
		return account.User{}, fmt.Errorf("a user with e-mail %s already exists", email)
	}
	return u, err
}

// validEmail accepts a plain address (no display name), at most 254
// characters, with a dot-free or dotted domain.
func validEmail(s string) bool {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == "" && strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".")
}
