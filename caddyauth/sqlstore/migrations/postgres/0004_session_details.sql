-- What a user's list of sessions shows besides the address: when each
-- session started (copied to every row a rotation writes; a row already
-- here takes its own time, the best known), and the User-Agent header of
-- the request that opened it, clipped to 512 bytes ('' when
-- `record_user_agent off` or no header).
ALTER TABLE refresh_tokens ADD COLUMN session_started BIGINT;
ALTER TABLE refresh_tokens ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
UPDATE refresh_tokens SET session_started = created;
