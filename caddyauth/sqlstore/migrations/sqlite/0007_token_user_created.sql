-- A user's rows of one purpose by time, newest first, without reading the
-- others: the MFA lockout reads the user's last mfa_max_attempts failures
-- in its window and no more, however many the table holds. The index
-- keeps the old one's leading columns, which it replaces.
CREATE INDEX tokens_user_purpose_created_idx ON tokens (user_id, purpose, created, id);
DROP INDEX tokens_user_purpose_idx;
