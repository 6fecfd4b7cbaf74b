-- Passkeys (WebAuthn credentials): one row per credential, which belongs
-- to one account. credential_id is the credential's id, base64url without
-- padding. locked is set when the credential's signature counter went
-- backwards (a cloned authenticator): it no longer signs in.
CREATE TABLE passkeys (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	credential_id   TEXT    NOT NULL UNIQUE,
	public_key      BLOB   NOT NULL,
	sign_count      BIGINT  NOT NULL,
	name            TEXT    NOT NULL,
	aaguid          BLOB   NOT NULL,
	transports      TEXT    NOT NULL,
	user_verified   BOOLEAN NOT NULL,
	backup_eligible BOOLEAN NOT NULL,
	backup_state    BOOLEAN NOT NULL,
	locked          BOOLEAN NOT NULL,
	created         BIGINT  NOT NULL,
	last_used       BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);
