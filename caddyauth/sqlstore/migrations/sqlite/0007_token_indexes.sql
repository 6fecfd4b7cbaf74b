-- Lookups that stay as cheap however many rows the table holds.
--
-- A user's rows of one purpose by time, newest first, without reading the
-- others: the MFA lockout reads the user's last mfa_max_attempts failures
-- in its window and no more. The index keeps the old one's leading
-- columns, which it replaces.
CREATE INDEX tokens_user_purpose_created_idx ON tokens (user_id, purpose, created, id);
DROP INDEX tokens_user_purpose_idx;
-- One row by its token: a lookup by (purpose, token) newest first, as a
-- challenge is found, reads that token's rows only. With the old index on
-- (token, purpose) a planner could prefer the one on (purpose, created)
-- for the order and read every live row of the purpose, a cost that grew
-- with the number of pending challenges.
CREATE INDEX tokens_token_purpose_created_idx ON tokens (token, purpose, created, id);
DROP INDEX tokens_token_purpose_idx;
