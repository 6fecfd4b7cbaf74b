package caddyauth_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Decision 13: generated keys live in Caddy's storage, never in the user
// database, so a dump of the database alone reveals no key.

// withStorage puts a `storage file_system <dir>` global option into a test
// Caddyfile.
func withStorage(cf, dir string) string {
	return strings.Replace(cf, "\tadmin ", "\tstorage file_system "+dir+"\n\tadmin ", 1)
}

// realmID is the database's realm id, which names its keys in Caddy's
// storage.
func realmID(t *testing.T, db *sql.DB) string {
	t.Helper()
	var id string
	if err := db.QueryRow(`SELECT value FROM settings WHERE name = 'realm_id'`).Scan(&id); err != nil {
		t.Fatalf("reading the realm id: %v", err)
	}
	return id
}

// storedKeys reads the generated keys of the database's realm from a
// storage directory: the Ed25519 key and the secrets key (raw bytes).
func storedKeys(t *testing.T, db *sql.DB, dir string) (ed25519.PrivateKey, []byte) {
	t.Helper()
	keys := filepath.Join(dir, "jwt_allauth", realmID(t, db))
	raw, err := os.ReadFile(filepath.Join(keys, "signing_key_ed25519.pem"))
	if err != nil {
		t.Fatalf("the signing key is not in Caddy's storage: %v", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("the stored signing key is not a PEM private key: %q", raw)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(filepath.Join(keys, "secrets_key"))
	if err != nil {
		t.Fatalf("the secrets key is not in Caddy's storage: %v", err)
	}
	secrets, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(secrets) != 32 {
		t.Fatalf("the stored secrets key is not 32 bytes in base64: %q", raw)
	}
	return k.(ed25519.PrivateKey), secrets
}

// assertNoKeyMaterial reads every row of every table of the running
// store and fails if any value holds one of the keys, raw or in a text
// encoding.
func assertNoKeyMaterial(t *testing.T, signing ed25519.PrivateKey, secrets []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(signing)
	if err != nil {
		t.Fatal(err)
	}
	needles := map[string][]byte{}
	for name, key := range map[string][]byte{"signing seed": signing.Seed(), "signing key DER": der, "secrets key": secrets} {
		needles[name] = key
		needles[name+" (hex)"] = []byte(hex.EncodeToString(key))
		needles[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString(key))
		needles[name+" (base64url)"] = []byte(base64.RawURLEncoding.EncodeToString(key))
	}
	db := storeDB(t)
	tables := tableNames(t, db)
	if len(tables) < 5 {
		t.Fatalf("found only the tables %v", tables)
	}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM ` + table)
		if err != nil {
			t.Fatalf("reading %s: %v", table, err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				for name, needle := range needles {
					if bytes.Contains(v, needle) {
						t.Errorf("table %s, column %s holds the %s", table, cols[i], name)
					}
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
}

// tableNames lists the tables of the running store's database (its schema
// on PostgreSQL).
func tableNames(t *testing.T, db *sql.DB) []string {
	t.Helper()
	query := `SELECT name FROM sqlite_master WHERE type = 'table'`
	if _, err := db.Exec(`SELECT current_schema()`); err == nil {
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`
	}
	return stringColumn(t, db, query)
}

// stringColumn runs query, which selects one text column, and returns its
// values.
func stringColumn(t *testing.T, db *sql.DB, query string) []string {
	t.Helper()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var values []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		values = append(values, v)
	}
	return values
}

// settingNames lists the names in the settings table.
func settingNames(t *testing.T) []string {
	t.Helper()
	return stringColumn(t, storeDB(t), `SELECT name FROM settings ORDER BY name`)
}

// totpData is the sealed secret of the user's TOTP authenticator.
func totpData(t *testing.T, userID int64) []byte {
	t.Helper()
	var data []byte
	if err := storeDB(t).QueryRow(`SELECT data FROM authenticators WHERE user_id = $1 AND type = 'totp'`, userID).Scan(&data); err != nil {
		t.Fatal(err)
	}
	return data
}

// mfaLogin logs an enrolled user in with the current code and returns the
// access token.
func (s *site) mfaLogin(email, secret string) string {
	s.t.Helper()
	nextStep(s.t)
	r := s.verify(s.challenge(email), totpNow(s.t, secret)).expect(s.t, 200)
	if r.str("access") == "" {
		s.t.Fatalf("MFA verify gave no access token: %s", r.raw)
	}
	return r.str("access")
}

// TestKeysInCaddyStorageE2E: after a start the keys are files of Caddy's
// storage and no table of the user database holds them; a restart on the
// same storage and database reuses them (tokens issued before it still
// verify, TOTP still opens); and a node whose storage holds other keys
// refuses to start on that database.
func TestKeysInCaddyStorageE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		dir := t.TempDir()
		cf := withStorage(caddyfile(store, mfaOptions("optional"), defaultBody), dir)
		s := startCaddy(t, cf)
		const email = "keys@example.com"
		u, enr := s.enrolledUser(email)
		access := s.mfaLogin(email, enr.secret)

		signing, secrets := storedKeys(t, storeDB(t), dir)
		assertNoKeyMaterial(t, signing, secrets)
		if names := settingNames(t); strings.Join(names, ",") != "generated_secrets_key_check,generated_signing_key_id,realm_id" {
			t.Fatalf("settings rows %v, want only the realm id and the two key records", names)
		}
		// The storage key is the one the realm signs with.
		jwks := s.get("/auth/.well-known/jwks.json").expect(t, 200)
		keys, _ := jwks.body["keys"].([]any)
		if len(keys) != 1 || keys[0].(map[string]any)["x"] != base64.RawURLEncoding.EncodeToString(signing.Public().(ed25519.PublicKey)) {
			t.Fatalf("JWKS %s does not publish the stored key", jwks.raw)
		}

		s.restart(cf)
		if r := s.get("/", bearer(access)).expect(t, 200); !strings.HasPrefix(string(r.raw), "user="+strconv.FormatInt(u.ID, 10)+" ") {
			t.Fatalf("a token from before the restart: %s", r.raw)
		}
		s.mfaLogin(email, enr.secret)
		again, againSecrets := storedKeys(t, storeDB(t), dir)
		if !again.Equal(signing) || !bytes.Equal(againSecrets, secrets) {
			t.Fatal("the restart made new keys")
		}

		// Another node, the same database, a storage of its own: it
		// refuses to start rather than sign and seal with other keys.
		if err := caddy.Stop(); err != nil {
			t.Fatal(err)
		}
		other := withStorage(caddyfile(store, mfaOptions("optional"), defaultBody), t.TempDir())
		cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(other), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = caddy.Load(cfg, true)
		if err == nil {
			t.Fatal("a node with other keys in its storage started on the database")
		}
		if !strings.Contains(err.Error(), "not the ones this database was used with") || !strings.Contains(err.Error(), "same `storage` global option") {
			t.Fatalf("refusal %q does not say what to do", err)
		}
	})
}

// TestKeysPerDatabaseE2E: two deployments with databases of their own
// that share one Caddy storage get keys of their own, so neither accepts
// the other's tokens.
func TestKeysPerDatabaseE2E(t *testing.T) {
	dir := t.TempDir()
	first := withStorage(caddyfile("store sqlite "+filepath.Join(t.TempDir(), "a.db"), "", defaultBody), dir)
	s := startCaddy(t, first)
	mustCreateUser(t, userEmail, userPass, 0)
	access, _ := s.login(userEmail, userPass)
	firstKey, _ := storedKeys(t, storeDB(t), dir)

	s.restart(withStorage(caddyfile("store sqlite "+filepath.Join(t.TempDir(), "b.db"), "", defaultBody), dir))
	mustCreateUser(t, userEmail, userPass, 0)
	if secondKey, _ := storedKeys(t, storeDB(t), dir); secondKey.Equal(firstKey) {
		t.Fatal("two databases share one signing key")
	}
	s.get("/", bearer(access)).expect(t, 401)
	other, _ := s.login(userEmail, userPass)
	s.get("/", bearer(other)).expect(t, 200)
}

// legacySeal seals a TOTP secret the way versions that kept the signing
// key in the database did: AES-256-GCM under HKDF-SHA256 of the Ed25519
// seed, version byte 1, a 12-byte nonce, the user id as additional data.
func legacySeal(t *testing.T, seed []byte, userID int64, secret string) []byte {
	t.Helper()
	key, err := hkdf.Key(sha256.New, seed, nil, "caddy-jwt-allauth totp secrets", 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 1+gcm.NonceSize())
	out[0] = 1
	if _, err := rand.Read(out[1:]); err != nil {
		t.Fatal(err)
	}
	return gcm.Seal(out, out[1:], []byte(secret), []byte("totp:"+strconv.FormatInt(userID, 10)))
}

// TestKeysMigrateFromDatabaseE2E: a database as an earlier version left
// it (the Ed25519 key in the settings table, TOTP secrets sealed under a
// key derived from its seed) is migrated on the first start: the key moves
// to Caddy's storage and the row is gone, tokens signed before still
// verify, TOTP still verifies, and the next start changes nothing.
func TestKeysMigrateFromDatabaseE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		ctx := context.Background()
		// The earlier version's run: users, a TOTP authenticator, tokens.
		before := t.TempDir()
		s := startCaddy(t, withStorage(caddyfile(store, mfaOptions("optional"), defaultBody), before))
		const email, plain = "legacy@example.com", "plain@example.com"
		u, enr := s.enrolledUser(email)
		access := s.mfaLogin(email, enr.secret)
		mustCreateUser(t, plain, mfaPass, 0)
		plainAccess, plainRefresh := s.login(plain, mfaPass)
		legacyKey, _ := storedKeys(t, storeDB(t), before)
		// What it left in the database.
		der, err := x509.MarshalPKCS8PrivateKey(legacyKey)
		if err != nil {
			t.Fatal(err)
		}
		db := storeDB(t)
		oldSealed := legacySeal(t, legacyKey.Seed(), u.ID, enr.secret)
		for _, q := range []struct {
			query string
			args  []any
		}{
			{`DELETE FROM settings`, nil},
			{`INSERT INTO settings (name, value) VALUES ('signing_key_ed25519', $1)`, []any{der}},
			{`UPDATE authenticators SET data = $1 WHERE user_id = $2 AND type = 'totp'`, []any{oldSealed, u.ID}},
		} {
			if _, err := db.ExecContext(ctx, q.query, q.args...); err != nil {
				t.Fatalf("%s: %v", q.query, err)
			}
		}

		// The first start of this version, on storage that has no keys yet.
		dir := t.TempDir()
		cf := withStorage(caddyfile(store, mfaOptions("optional"), defaultBody), dir)
		s.restart(cf)
		signing, secrets := storedKeys(t, storeDB(t), dir)
		if !signing.Equal(legacyKey) {
			t.Fatal("the signing key in Caddy's storage is not the one the database held")
		}
		for _, name := range settingNames(t) {
			if name == "signing_key_ed25519" {
				t.Fatal("the signing key is still in the settings table")
			}
		}
		assertNoKeyMaterial(t, signing, secrets)
		resealed := totpData(t, u.ID)
		if bytes.Equal(resealed, oldSealed) {
			t.Fatal("the TOTP secret is still sealed under the key derived from the signing seed")
		}
		if r := s.get("/", bearer(access)).expect(t, 200); !strings.HasPrefix(string(r.raw), "user="+strconv.FormatInt(u.ID, 10)+" ") {
			t.Fatalf("a token from before the migration: %s", r.raw)
		}
		s.get("/", bearer(plainAccess)).expect(t, 200)
		s.post("/auth/refresh/", nil, refreshCookie(plainRefresh)).expect(t, 200)
		s.mfaLogin(email, enr.secret)

		// A second start finds nothing to migrate and changes nothing.
		s.restart(cf)
		if again := totpData(t, u.ID); !bytes.Equal(again, resealed) {
			t.Fatal("the second start sealed the TOTP secret again")
		}
		s.mfaLogin(email, enr.secret)
	})
}

// TestKeysMigrateConcurrentStartsE2E: two nodes of this version start at
// once on a database an earlier version left, sharing one empty storage.
// One of them migrates; both end up with the database's signing key, and
// the re-encrypted TOTP secret verifies on either.
func TestKeysMigrateConcurrentStartsE2E(t *testing.T) {
	needCluster(t)
	dsn := freshSchemaDSN(t)
	prefix := "e2e_keys_" + randomHex(t, 6) + ":"
	before := t.TempDir()
	old := newNode(t, "old", dsn, before, prefix)
	old.start()
	const email = "migrate@world.com"
	old.createUser(email, mfaPass)
	app, access := enrolOn(t, old, email)
	old.stop(syscall.SIGTERM)

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	legacyKey, _ := storedKeys(t, db, before)
	der, err := x509.MarshalPKCS8PrivateKey(legacyKey)
	if err != nil {
		t.Fatal(err)
	}
	var userID int64
	if err := db.QueryRow(`SELECT id FROM users WHERE email = $1`, email).Scan(&userID); err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		query string
		args  []any
	}{
		{`DELETE FROM settings`, nil},
		{`INSERT INTO settings (name, value) VALUES ('signing_key_ed25519', $1)`, []any{der}},
		{`UPDATE authenticators SET data = $1 WHERE user_id = $2 AND type = 'totp'`, []any{legacySeal(t, legacyKey.Seed(), userID, app.secret), userID}},
	} {
		if _, err := db.Exec(q.query, q.args...); err != nil {
			t.Fatalf("%s: %v", q.query, err)
		}
	}

	storage := t.TempDir()
	a, b := newNode(t, "A", dsn, storage, prefix), newNode(t, "B", dsn, storage, prefix)
	a.launch()
	b.launch()
	a.ready()
	b.ready()
	if signing, _ := storedKeys(t, db, storage); !signing.Equal(legacyKey) {
		t.Fatal("the signing key in the shared storage is not the one the database held")
	}
	var legacyRows int
	if err := db.QueryRow(`SELECT COUNT(*) FROM settings WHERE name = 'signing_key_ed25519'`).Scan(&legacyRows); err != nil || legacyRows != 0 {
		t.Fatalf("%d legacy key rows left (%v)", legacyRows, err)
	}
	for _, n := range []*node{a, b} {
		n.get("/", bearer(access)).expect(t, 200)
		n.verify(n.challenge(email), app.code(t)).expect(t, 200)
	}
}
