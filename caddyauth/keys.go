package caddyauth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/secretbox"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/tokens"
)

// Generated keys live in Caddy's storage (the `storage` global option: the
// file system under Caddy's data directory by default, and whatever
// clustered nodes share for their certificates), never in the user
// database, so that a dump of the database reveals no key. They are kept
// under jwt_allauth/<realm id>/, the realm id being a random public name
// the database holds, so that deployments with different databases never
// share keys (nor accept each other's tokens) even when they share a
// storage.
const (
	// storageSigningKey is the Ed25519 signing key, PKCS #8 in PEM.
	storageSigningKey = "signing_key_ed25519.pem"
	// storageSecretsKey is the key material the TOTP secrets, the CSRF
	// tokens and the keyed hashes are derived from: 32 random bytes in
	// base64, made independently of the signing key.
	storageSecretsKey = "secrets_key"
	// realmIDSetting names the settings row with the realm id.
	realmIDSetting = "realm_id"
)

// Settings rows that name, without revealing them, the generated keys a
// database is used with, so that a node whose storage holds other keys
// refuses to start instead of sealing secrets the other nodes cannot open.
const (
	signingKeyIDSetting    = "generated_signing_key_id"
	secretsKeyCheckSetting = "generated_secrets_key_check"
)

// legacySigningKeySetting is the settings row where earlier versions kept
// the generated Ed25519 key (PKCS #8 DER), with the TOTP secrets sealed
// under a key derived from its seed. migrateLegacyKey moves it out.
const legacySigningKeySetting = "signing_key_ed25519"

// loadKeys builds the realm's key set, the box that seals TOTP secrets,
// the CSRF key and the hash key.
//
// With a signing key the realm signs HS256 with it; without one, it signs
// with the Ed25519 key in Caddy's storage, generated on first start. The
// other keys are derived from secrets_key, else from signing_key, else from
// a key generated on first start and kept in Caddy's storage. The storage
// is locked while keys are loaded or made, so concurrent first starts of
// the nodes sharing it agree on one set.
func (rl *realm) loadKeys(ctx context.Context, storage certmagic.Storage, signingKey, secretsKey string) error {
	cfg := rl.tokenCfg
	if signingKey != "" {
		ks, err := tokens.NewHMAC([]byte(signingKey), cfg)
		if err != nil {
			return fmt.Errorf("signing_key: %v", err)
		}
		rl.keys = ks
	}
	realmID, err := rl.realmID(ctx)
	if err != nil {
		return err
	}
	// The lock serialises the load-or-create of the keys between the
	// nodes sharing the storage.
	lock := "jwt_allauth_keys_" + realmID
	if err := storage.Lock(ctx, lock); err != nil {
		return fmt.Errorf("locking the jwt_allauth keys in Caddy's storage: %w", err)
	}
	defer func() {
		if err := storage.Unlock(context.WithoutCancel(ctx), lock); err != nil {
			rl.logger.Error("unlocking the jwt_allauth keys in Caddy's storage", zap.Error(err))
		}
	}()
	sk := storedKeys{storage: storage, dir: "jwt_allauth/" + realmID + "/", rand: rl.rand}
	if err := sk.load(ctx); err != nil {
		return err
	}

	generatedSecrets := signingKey == "" && secretsKey == ""
	material := []byte(secretsKey)
	switch {
	case generatedSecrets:
		if err := sk.ensureSecrets(ctx); err != nil {
			return err
		}
		material = sk.secrets
	case secretsKey == "":
		material = []byte(signingKey)
	}
	if err := rl.deriveKeys(material); err != nil {
		return err
	}
	if generatedSecrets {
		check, err := secretbox.DeriveKey(material, "caddy-jwt-allauth key check")
		if err != nil {
			return err
		}
		if err := rl.checkKeyRecord(ctx, secretsKeyCheckSetting, check); err != nil {
			return err
		}
	}
	if err := rl.migrateLegacyKey(ctx, &sk, generatedSecrets); err != nil {
		return fmt.Errorf("moving the signing key from the database to Caddy's storage: %w", err)
	}

	if signingKey != "" {
		return nil
	}
	if err := sk.ensureSigning(ctx); err != nil {
		return err
	}
	ks, err := tokens.NewEd25519(sk.signing, cfg)
	if err != nil {
		return err
	}
	rl.keys = ks
	return rl.checkKeyRecord(ctx, signingKeyIDSetting, []byte(ks.KeyID()))
}

// realmID returns the database's realm id, making it on first start
// (concurrent first starts agree: the first stored id wins).
func (rl *realm) realmID(ctx context.Context) (string, error) {
	fresh, err := tokens.NewID(rl.rand)
	if err != nil {
		return "", err
	}
	id, err := rl.store.LoadOrStoreSetting(ctx, realmIDSetting, []byte(fresh))
	if err != nil {
		return "", fmt.Errorf("loading the realm id from the store: %w", err)
	}
	if !realmIDPattern.Match(id) {
		return "", fmt.Errorf("the settings row %q is not 32 hexadecimal digits", realmIDSetting)
	}
	return string(id), nil
}

// realmIDPattern is the form of realm ids (tokens.NewID's), safe in a
// storage key.
var realmIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// deriveKeys makes the TOTP box, the hash key and the CSRF key from
// material.
func (rl *realm) deriveKeys(material []byte) error {
	if len(material) < 32 {
		return errors.New("secrets_key must be at least 32 bytes")
	}
	key, err := secretbox.DeriveKey(material, "caddy-jwt-allauth totp secrets")
	if err != nil {
		return err
	}
	if rl.secrets, err = secretbox.New(key); err != nil {
		return err
	}
	// Hashes that leave the process (throttle keys in Redis, e-mail
	// hashes in logs) are keyed, so they cannot be confirmed by guessing
	// an address, and every node sharing the keys computes the same ones.
	if rl.hashKey, err = secretbox.DeriveKey(material, "caddy-jwt-allauth log and limiter hashes"); err != nil {
		return err
	}
	// The HTML forms' CSRF tokens are MACs under a key of their own.
	rl.csrfKey, err = secretbox.DeriveKey(material, "caddy-jwt-allauth csrf")
	return err
}

// checkKeyRecord records value under name in the database on first start,
// and refuses to start when the database holds another value: the keys in
// this node's storage are then not the ones the database was used with.
func (rl *realm) checkKeyRecord(ctx context.Context, name string, value []byte) error {
	stored, err := rl.store.LoadOrStoreSetting(ctx, name, value)
	if err != nil {
		return fmt.Errorf("recording the generated keys in the store: %w", err)
	}
	if !bytes.Equal(stored, value) {
		return fmt.Errorf("the jwt_allauth keys in this node's Caddy storage are not the ones this database was used with: "+
			"every node (and `caddy jwt-allauth`) sharing the database needs the same `storage` global option, as for certificates, "+
			"or the same data directory. Only if the old keys are lost for good, delete the row %q from the database's settings table "+
			"to start over: tokens issued until then stop verifying and TOTP authenticators must be set up again", name)
	}
	return nil
}

// migrateLegacyKey moves the signing key an earlier version kept in the
// database to Caddy's storage (unless the storage already has one) and,
// when the TOTP secrets were sealed under a key derived from it, seals
// them again under the realm's box, one authenticator per statement; the
// settings row goes last. Interrupted, the next start finishes the job:
// secrets already sealed again no longer open under the old key and are
// skipped. Nodes sharing the storage migrate one at a time (the caller
// holds the storage lock); a node with other storage was refused by the
// key check before it got here.
func (rl *realm) migrateLegacyKey(ctx context.Context, sk *storedKeys, resealTOTP bool) error {
	der, err := rl.store.Setting(ctx, legacySigningKeySetting)
	if errors.Is(err, account.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	legacy, err := tokens.ParseEd25519Key(der)
	if err != nil {
		return err
	}
	switch {
	case sk.signing == nil:
		if err := sk.storeSigning(ctx, legacy); err != nil {
			return err
		}
		rl.logger.Info("moved the jwt_allauth signing key from the database to Caddy's storage")
	case !sk.signing.Equal(legacy):
		rl.logger.Warn("the database held a signing key other than the one in Caddy's storage; " +
			"tokens it signed no longer verify")
	}
	if resealTOTP {
		resealed, unreadable, err := rl.resealTOTP(ctx, legacy.Seed())
		if err != nil {
			return err
		}
		if unreadable > 0 {
			rl.logger.Warn("TOTP secrets that open under neither the old nor the new key were left as they are",
				zap.Int("count", unreadable))
		}
		rl.logger.Info("re-encrypted the TOTP secrets under the key in Caddy's storage", zap.Int("count", resealed))
	}
	return rl.store.DeleteSetting(ctx, legacySigningKeySetting)
}

// resealTOTP seals every TOTP secret that opens under the box earlier
// versions derived from the Ed25519 seed again under the realm's box
// (account.ResealTOTP).
func (rl *realm) resealTOTP(ctx context.Context, seed []byte) (resealed, unreadable int, err error) {
	oldKey, err := secretbox.DeriveKey(seed, "caddy-jwt-allauth totp secrets")
	if err != nil {
		return 0, 0, err
	}
	old, err := secretbox.New(oldKey)
	if err != nil {
		return 0, 0, err
	}
	return account.ResealTOTP(ctx, rl.store, old, rl.secrets, rl.rand)
}

// storedKeys are the generated keys in Caddy's storage; nil when absent.
type storedKeys struct {
	storage certmagic.Storage
	dir     string // the realm's prefix of storage keys, ending in "/"
	rand    io.Reader
	signing ed25519.PrivateKey
	secrets []byte
}

// load reads whichever keys the storage has.
func (sk *storedKeys) load(ctx context.Context) error {
	raw, err := sk.storage.Load(ctx, sk.dir+storageSigningKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("loading the signing key from Caddy's storage: %w", err)
	default:
		block, _ := pem.Decode(raw)
		if block == nil || block.Type != "PRIVATE KEY" {
			return fmt.Errorf("%s in Caddy's storage is not a PEM private key", sk.dir+storageSigningKey)
		}
		if sk.signing, err = tokens.ParseEd25519Key(block.Bytes); err != nil {
			return fmt.Errorf("%s in Caddy's storage: %v", sk.dir+storageSigningKey, err)
		}
	}
	raw, err = sk.storage.Load(ctx, sk.dir+storageSecretsKey)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("loading the secrets key from Caddy's storage: %w", err)
	default:
		key, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw)))
		if err != nil || len(key) != 32 {
			return fmt.Errorf("%s in Caddy's storage is not 32 bytes in base64", sk.dir+storageSecretsKey)
		}
		sk.secrets = key
	}
	return nil
}

// ensureSigning generates and stores the signing key if there is none.
func (sk *storedKeys) ensureSigning(ctx context.Context) error {
	if sk.signing != nil {
		return nil
	}
	priv, err := tokens.GenerateEd25519Key(sk.rand)
	if err != nil {
		return err
	}
	return sk.storeSigning(ctx, priv)
}

// storeSigning writes priv to the storage.
func (sk *storedKeys) storeSigning(ctx context.Context, priv ed25519.PrivateKey) error {
	der, err := tokens.MarshalEd25519Key(priv)
	if err != nil {
		return err
	}
	if err := sk.storage.Store(ctx, sk.dir+storageSigningKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return fmt.Errorf("storing the signing key in Caddy's storage: %w", err)
	}
	sk.signing = priv
	return nil
}

// ensureSecrets generates and stores the secrets key if there is none.
func (sk *storedKeys) ensureSecrets(ctx context.Context) error {
	if sk.secrets != nil {
		return nil
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(sk.rand, key); err != nil {
		return fmt.Errorf("reading the secrets key: %w", err)
	}
	if err := sk.storage.Store(ctx, sk.dir+storageSecretsKey, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
		return fmt.Errorf("storing the secrets key in Caddy's storage: %w", err)
	}
	sk.secrets = key
	return nil
}
