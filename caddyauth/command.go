package caddyauth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "jwt-allauth",
		Short: "Manages the users of the jwt_allauth store",
		Long: `
Manages users in the store that a config's jwt_allauth global option names
(SQLite under Caddy's data directory when it names none). Run it with the
same --config (and environment) as the server, so it opens the same store.

  caddy jwt-allauth create-user --config Caddyfile --email a@example.com --role 1000 --password-stdin
  caddy jwt-allauth set-role    --config Caddyfile --email a@example.com --role 0
  caddy jwt-allauth disable     --config Caddyfile --email a@example.com
  caddy jwt-allauth enable      --config Caddyfile --email a@example.com
  caddy jwt-allauth reset-mfa   --config Caddyfile --email a@example.com
  caddy jwt-allauth list-users  --config Caddyfile
  caddy jwt-allauth list-social --config Caddyfile --email a@example.com
  caddy jwt-allauth unlink      --config Caddyfile --email a@example.com --provider google
  caddy jwt-allauth list-passkeys  --config Caddyfile --email a@example.com
  caddy jwt-allauth remove-passkey --config Caddyfile --email a@example.com --id 3
  caddy jwt-allauth export-user --config Caddyfile --email a@example.com
  caddy jwt-allauth delete-user --config Caddyfile --email a@example.com
`,
		CobraFunc: addUserCommands,
	})
}

// addUserCommands fills in `caddy jwt-allauth`: its flags and subcommands.
func addUserCommands(cmd *cobra.Command) {
	// A bare `caddy jwt-allauth` prints its help; an unknown subcommand is
	// an error, not the help with a success status.
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	cmd.PersistentFlags().StringP("config", "c", "", "Configuration file naming the store (default: ./Caddyfile)")
	cmd.PersistentFlags().StringP("adapter", "a", "", "Name of config adapter to apply")
	cmd.AddCommand(userCommand("create-user", "Creates a user (password read from standard input)", true, true, runCreateUser))
	cmd.AddCommand(userCommand("set-role", "Sets the role of a user", true, true, runSetRole))
	cmd.AddCommand(userCommand("disable", "Disables a user and ends their sessions", true, false, runDisable))
	cmd.AddCommand(userCommand("enable", "Enables a disabled user", true, false, runEnable))
	cmd.AddCommand(userCommand("reset-mfa", "Removes a user's TOTP, recovery codes and passkeys and lifts an MFA lockout", true, false, runResetMFA))
	cmd.AddCommand(userCommand("list-users", "Lists the users", false, false, runListUsers))
	cmd.AddCommand(userCommand("list-social", "Lists the identity providers a user is linked to", true, false, runListSocial))
	cmd.AddCommand(userCommand("unlink", "Removes a user's link to an identity provider (never the last way to sign in)", true, false, runUnlink))
	cmd.AddCommand(userCommand("list-passkeys", "Lists a user's passkeys", true, false, runListPasskeys))
	cmd.AddCommand(userCommand("remove-passkey", "Removes one of a user's passkeys (a lost device)", true, false, runRemovePasskey))
	cmd.AddCommand(userCommand("export-user", "Prints what the store keeps of a user as JSON (no hashes, secrets or tokens)", true, false, runExportUser))
	cmd.AddCommand(userCommand("delete-user", "Deletes a user and everything the store keeps of them", true, false, runDeleteUser))
}

// userOptions are the flags of the user subcommands.
type userOptions struct {
	email         string
	provider, uid string
	passkey       int64
	role          int
	passwordStdin bool
	out           io.Writer
	in            io.Reader
}

func userCommand(name, short string, email, role bool, run func(context.Context, *realm, userOptions) error) *cobra.Command {
	var opts userOptions
	c := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfgFile, _ := cmd.Flags().GetString("config")
			adapter, _ := cmd.Flags().GetString("adapter")
			rl, cleanup, err := loadRealm(cfgFile, adapter)
			if err != nil {
				return err
			}
			defer cleanup()
			if opts.role < 0 {
				return errors.New("--role must be 0 or a positive integer")
			}
			opts.out, opts.in = cmd.OutOrStdout(), cmd.InOrStdin()
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			return run(ctx, rl, opts)
		},
	}
	if email {
		c.Flags().StringVar(&opts.email, "email", "", "E-mail address of the user")
		_ = c.MarkFlagRequired("email")
	}
	if role {
		c.Flags().IntVar(&opts.role, "role", account.RoleUser, "Role: 0 user (default), 900 superuser, 1000 staff, any other positive integer a custom role")
		if name == "set-role" {
			_ = c.MarkFlagRequired("role")
		}
	}
	if name == "create-user" {
		c.Flags().BoolVar(&opts.passwordStdin, "password-stdin", false, "Read the password from standard input")
	}
	if name == "remove-passkey" {
		c.Flags().Int64Var(&opts.passkey, "id", 0, "Id of the passkey, as list-passkeys shows it")
		_ = c.MarkFlagRequired("id")
	}
	if name == "unlink" {
		c.Flags().StringVar(&opts.provider, "provider", "", "Id of the provider, as in the social option")
		_ = c.MarkFlagRequired("provider")
		c.Flags().StringVar(&opts.uid, "uid", "", "The provider's subject of the link, when the user is linked to that provider twice")
	}
	return c
}

// loadRealm provisions only the jwt_allauth app of a config (no servers
// are started) and returns its realm.
func loadRealm(cfgFile, adapter string) (*realm, func(), error) {
	// Without --config, a Caddyfile in the current directory is used, as
	// `caddy run` does; with neither, the command refuses rather than open
	// a default store the server may not use.
	raw, _, _, err := caddycmd.LoadConfig(cfgFile, adapter)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) == 0 {
		return nil, nil, errors.New("no config: give the server's config with --config (e.g. --config /etc/caddy/Caddyfile), or run in the folder of its Caddyfile")
	}
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, nil, fmt.Errorf("decoding config: %v", err)
	}
	only := &caddy.Config{StorageRaw: cfg.StorageRaw, AppsRaw: caddy.ModuleMap{}}
	if raw, ok := cfg.AppsRaw["jwt_allauth"]; ok {
		only.AppsRaw["jwt_allauth"] = raw
	} else {
		only.AppsRaw["jwt_allauth"] = json.RawMessage(`{}`)
	}
	ctx, err := caddy.ProvisionContext(only)
	if err != nil {
		return nil, nil, err
	}
	appIface, err := ctx.App("jwt_allauth")
	if err != nil {
		return nil, nil, err
	}
	app := appIface.(*App)
	rl := app.realm
	// The app gives back what it shares with servers in this process (the
	// mail queue, the metrics), the store its connections.
	cleanup := func() {
		_ = app.Cleanup()
		if c, ok := rl.store.(caddy.CleanerUpper); ok {
			_ = c.Cleanup()
		}
	}
	return rl, cleanup, nil
}

func runCreateUser(ctx context.Context, rl *realm, o userOptions) error {
	if !o.passwordStdin {
		return errors.New("give the password on standard input with --password-stdin (never as an argument)")
	}
	line, err := bufio.NewReader(o.in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading password: %v", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return errors.New("no password on standard input")
	}
	u, err := rl.svc.Users.Create(ctx, o.email, password, o.role)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "created user %d <%s> with role %d\n", u.ID, u.Email, u.Role)
	return nil
}

func runSetRole(ctx context.Context, rl *realm, o userOptions) error {
	u, err := rl.svc.Users.SetRole(ctx, o.email, o.role)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "user %d <%s> now has role %d (tokens carry it from their next refresh)\n", u.ID, u.Email, o.role)
	return nil
}

func runDisable(ctx context.Context, rl *realm, o userOptions) error {
	u, err := rl.svc.Users.Disable(ctx, o.email)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "user %d <%s> disabled, sessions ended\n", u.ID, u.Email)
	return nil
}

func runEnable(ctx context.Context, rl *realm, o userOptions) error {
	u, err := rl.svc.Users.Enable(ctx, o.email)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "user %d <%s> enabled\n", u.ID, u.Email)
	return nil
}

func runResetMFA(ctx context.Context, rl *realm, o userOptions) error {
	u, err := rl.svc.Users.ResetMFA(ctx, o.email)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "user %d <%s>: TOTP, recovery codes and passkeys removed, MFA lockout lifted\n", u.ID, u.Email)
	return nil
}

func runListUsers(ctx context.Context, rl *realm, o userOptions) error {
	users, err := rl.svc.Users.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEMAIL\tROLE\tACTIVE\tVERIFIED\tTOTP\tPASSKEYS\tPROVIDERS\tLAST LOGIN")
	for _, u := range users {
		providers := "-"
		if len(u.Providers) > 0 {
			providers = strings.Join(u.Providers, ",")
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%t\t%t\t%t\t%d\t%s\t%s\n", u.ID, u.Email, u.Role, u.IsActive, u.EmailVerified, u.TOTP, u.Passkeys, providers, orDash(u.LastLogin))
	}
	return tw.Flush()
}

// orDash is a time as the lists show it, "-" for none.
func orDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func runListSocial(ctx context.Context, rl *realm, o userOptions) error {
	links, err := rl.svc.Users.Links(ctx, o.email)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tUID\tLINKED\tLAST LOGIN")
	for _, l := range links {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", l.ID, l.Provider, l.UID, orDash(l.DateJoined), orDash(l.LastLogin))
	}
	return tw.Flush()
}

func runUnlink(ctx context.Context, rl *realm, o userOptions) error {
	if err := rl.svc.Users.Unlink(ctx, o.email, o.provider, o.uid); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "%s: link to %s removed\n", o.email, o.provider)
	return nil
}

func runListPasskeys(ctx context.Context, rl *realm, o userOptions) error {
	keys, err := rl.svc.Users.UserPasskeys(ctx, o.email)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSYNCED\tLOCKED\tADDED\tLAST USED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%s\t%t\t%t\t%s\t%s\n", k.ID, k.Name, k.BackupEligible, k.Locked, orDash(k.Created), orDash(k.LastUsed))
	}
	return tw.Flush()
}

func runRemovePasskey(ctx context.Context, rl *realm, o userOptions) error {
	if err := rl.svc.Users.RemovePasskey(ctx, o.email, o.passkey); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "%s: passkey %d removed\n", o.email, o.passkey)
	return nil
}
