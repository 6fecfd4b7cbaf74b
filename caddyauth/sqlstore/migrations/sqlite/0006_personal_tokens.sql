-- Personal access tokens: one row per token, which belongs to one
-- account. token_hash is the hex SHA-256 of the secret, which is shown
-- once and never stored; role is the role the token carries (at most its
-- owner's); times are Unix microseconds.
CREATE TABLE personal_tokens (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    BIGINT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name       TEXT     NOT NULL,
	token_hash TEXT     NOT NULL UNIQUE,
	role       INTEGER  NOT NULL,
	created    BIGINT   NOT NULL,
	expires    BIGINT   NOT NULL,
	last_used  BIGINT
);
CREATE INDEX personal_tokens_user ON personal_tokens (user_id);
