-- Initial schema. Timestamps are unix microseconds (UTC) in BIGINT columns.
-- AUTOINCREMENT keeps ids of deleted rows from being handed out again, so a
-- stale reference to a deleted account can never point at a new one.

CREATE TABLE users (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	email          TEXT    NOT NULL UNIQUE,
	password       TEXT    NOT NULL DEFAULT '',
	first_name     TEXT    NOT NULL DEFAULT '',
	last_name      TEXT    NOT NULL DEFAULT '',
	role           INTEGER NOT NULL DEFAULT 0,
	is_active      BOOLEAN NOT NULL DEFAULT TRUE,
	email_verified BOOLEAN NOT NULL DEFAULT FALSE,
	date_joined    BIGINT  NOT NULL,
	last_login     BIGINT
);

CREATE TABLE refresh_tokens (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	jti     TEXT    NOT NULL UNIQUE,
	session TEXT    NOT NULL,
	enabled BOOLEAN NOT NULL DEFAULT TRUE,
	created BIGINT  NOT NULL,
	expires BIGINT  NOT NULL,
	ip      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires);

-- user_id is NULL for rows that belong to no account (for example failure
-- records keyed by an address).
CREATE TABLE tokens (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
	purpose TEXT   NOT NULL,
	token   TEXT   NOT NULL,
	created BIGINT NOT NULL
);
CREATE INDEX tokens_token_purpose_idx ON tokens (token, purpose);
CREATE INDEX tokens_user_purpose_idx ON tokens (user_id, purpose);
CREATE INDEX tokens_purpose_created_idx ON tokens (purpose, created);

CREATE TABLE authenticators (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	type         TEXT   NOT NULL,
	data         BLOB   NOT NULL,
	last_step    BIGINT NOT NULL DEFAULT 0,
	created_at   BIGINT NOT NULL,
	last_used_at BIGINT,
	UNIQUE (user_id, type)
);

CREATE TABLE recovery_codes (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id   BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	code_hash TEXT   NOT NULL,
	UNIQUE (user_id, code_hash)
);

CREATE TABLE settings (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
);
