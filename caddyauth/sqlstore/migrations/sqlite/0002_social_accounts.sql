-- Social login: an account's identities at identity providers, one row
-- per (provider, subject); a subject belongs to one account only.
CREATE TABLE social_accounts (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	provider   TEXT   NOT NULL,
	uid        TEXT   NOT NULL,
	created    BIGINT NOT NULL,
	last_login BIGINT,
	UNIQUE (provider, uid)
);
CREATE INDEX social_accounts_user ON social_accounts (user_id);
