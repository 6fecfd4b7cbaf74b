package caddyauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/web"
)

// CLI is `caddy jwt-allauth` with its subcommands, for running in tests.
func CLI() *cobra.Command {
	c := &cobra.Command{Use: "jwt-allauth", SilenceUsage: true, SilenceErrors: true}
	addUserCommands(c)
	return c
}

// Hooks for the end-to-end tests (package caddyauth_test), which drive a
// real Caddy in this process and need to seed users, read the store and
// move the realm's clock.

func activeRealm() (*realm, error) {
	appIface, err := caddy.ActiveContext().App("jwt_allauth")
	if err != nil {
		return nil, err
	}
	a, ok := appIface.(*App)
	if !ok || a.realm == nil {
		return nil, fmt.Errorf("no provisioned jwt_allauth app is running")
	}
	return a.realm, nil
}

// MailQueuePerKind is the share of the mail queue each kind of mail has.
const MailQueuePerKind = mailQueuePerKind

// AdvanceClock moves the running realm's clock forward by d.
func AdvanceClock(d time.Duration) error {
	rl, err := activeRealm()
	if err != nil {
		return err
	}
	rl.clock.Advance(d)
	return nil
}

// CreateUser adds an active, verified user to the running realm's store,
// as `caddy jwt-allauth create-user` does.
func CreateUser(email, password string, role int) (account.User, error) {
	rl, err := activeRealm()
	if err != nil {
		return account.User{}, err
	}
	return rl.svc.Users.Create(context.Background(), email, password, role)
}

// ActiveStore returns the running realm's store.
func ActiveStore() (account.Store, error) {
	rl, err := activeRealm()
	if err != nil {
		return nil, err
	}
	return rl.store, nil
}

// Now is the running realm's clock.
func Now() (time.Time, error) {
	rl, err := activeRealm()
	if err != nil {
		return time.Time{}, err
	}
	return rl.clock.Now(), nil
}

// ThrottleNames lists every throttle the realm knows.
func ThrottleNames() []string {
	var names []string
	for name := range account.DefaultThrottles {
		names = append(names, name)
	}
	return names
}

// HashPassword hashes password as the running realm does.
func HashPassword(password string) (string, error) {
	rl, err := activeRealm()
	if err != nil {
		return "", err
	}
	return rl.hasher.Hash(context.Background(), password)
}

// HoldHashSlots takes, without waiting, every hashing slot of the running
// realm that may hash, so that every password check waits in the hasher
// until release is called.
func HoldHashSlots() (release func(), err error) {
	rl, err := activeRealm()
	if err != nil {
		return nil, err
	}
	// With a context already ended, Hold takes a free slot and gives up
	// at once when none is left.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	var held []func()
	for {
		r, err := rl.hasher.Hold(ended)
		if err != nil {
			break
		}
		held = append(held, r)
	}
	if len(held) == 0 {
		return nil, errors.New("no hashing slot was free")
	}
	return func() {
		for _, r := range held {
			r()
		}
	}, nil
}

// CSRFTokenFor is the form token the running realm derives from a CSRF
// cookie value, what an attacker who planted that cookie would need.
func CSRFTokenFor(cookie string) (string, error) {
	rl, err := activeRealm()
	if err != nil {
		return "", err
	}
	return web.CSRFTokenFor(rl.csrfKey, cookie), nil
}
