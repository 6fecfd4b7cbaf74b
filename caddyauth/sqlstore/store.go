// Package sqlstore implements account.Store over database/sql, once for
// every SQL database; a Dialect holds the few differences. Timestamps are
// stored as unix microseconds (so they round-trip at microsecond precision
// and come back in UTC), booleans as BOOLEAN.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// DefaultQueryTimeout bounds a query when Store.QueryTimeout is zero.
const DefaultQueryTimeout = 5 * time.Second

// querier is what *sql.DB and *sql.Tx have in common, so that every method
// body is written once.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Store is a caddyauth.Store over a SQL database. Create it with New after
// running Migrate.
type Store struct {
	// QueryTimeout bounds every method call (a transaction of InTx counts
	// as one call), within the caller's own deadline. Zero means
	// DefaultQueryTimeout (5s).
	QueryTimeout time.Duration

	db      *sql.DB
	q       querier
	tx      *sql.Tx // non-nil when bound to a transaction of InTx
	dialect Dialect
}

// MigrateTimeout bounds the schema migration run when a database is
// opened.
const MigrateTimeout = time.Minute

// New returns a Store over db, whose schema must be up to date (see Migrate).
func New(db *sql.DB, d Dialect) *Store {
	return &Store{db: db, q: db, dialect: d}
}

// DB returns the database the store runs on.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the store's dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// ctx derives the per-call deadline from the caller's context.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := s.QueryTimeout
	if d <= 0 {
		d = DefaultQueryTimeout
	}
	return context.WithTimeout(ctx, d)
}

// inTx runs fn in a transaction: the store's own when it is bound to one,
// otherwise a new one that is committed when fn returns nil and rolled back
// otherwise. ctx must already carry the call's deadline.
func (s *Store) inTx(ctx context.Context, fn func(tx *Store) error) error {
	if s.tx != nil {
		return fn(s)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	txs := &Store{QueryTimeout: s.QueryTimeout, db: s.db, q: tx, tx: tx, dialect: s.dialect}
	if err := fn(txs); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// InTx runs fn in one transaction, committed when fn returns nil and rolled
// back otherwise. The whole transaction, fn included, must finish within
// QueryTimeout. Called on a Store that is already bound to a transaction,
// fn joins that transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx account.Store) error) error {
	if s.tx != nil {
		return fn(s)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *Store) error { return fn(tx) })
}

// CommitUnflushed lets the store's transaction commit without waiting for
// a flush to disk (see Dialect). It fails outside a transaction of InTx.
func (s *Store) CommitUnflushed(ctx context.Context) error {
	if s.tx == nil {
		return errors.New("CommitUnflushed outside a transaction")
	}
	if s.dialect.commitUnflushed == "" {
		return nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.q.ExecContext(ctx, s.dialect.commitUnflushed)
	return err
}

// Helpers.

func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros maps the zero time to NULL.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// nullID maps the id 0 to NULL.
func nullID(id int64) sql.NullInt64 {
	return sql.NullInt64{Int64: id, Valid: id != 0}
}

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return account.ErrNotFound
	}
	return err
}

func affected(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// placeholders returns "$first, $first+1, ..." for n parameters.
func placeholders(first, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(first+i))
	}
	return b.String()
}

// insertID runs an INSERT ... ON CONFLICT DO NOTHING RETURNING id and maps
// "no row returned" to ErrConflict.
func (s *Store) insertID(ctx context.Context, query string, args ...any) (int64, error) {
	var id int64
	err := s.q.QueryRowContext(ctx, query, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, account.ErrConflict
	}
	return id, err
}

// Users.

const userColumns = `id, email, password, first_name, last_name, role, is_active, email_verified, date_joined, last_login`

type scanner interface{ Scan(dest ...any) error }

func scanUser(r scanner) (account.User, error) {
	var u account.User
	var joined int64
	var last sql.NullInt64
	err := r.Scan(&u.ID, &u.Email, &u.PasswordHash, &u.FirstName, &u.LastName,
		&u.Role, &u.IsActive, &u.EmailVerified, &joined, &last)
	u.DateJoined = fromMicros(joined)
	u.LastLogin = fromNullMicros(last)
	return u, err
}

// CreateUser inserts u (u.ID is ignored; a zero DateJoined means now) and
// returns the new id. The e-mail address is stored lower-cased and trimmed.
// ErrConflict when the e-mail address is taken.
func (s *Store) CreateUser(ctx context.Context, u account.User) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if u.DateJoined.IsZero() {
		u.DateJoined = time.Now()
	}
	return s.insertID(ctx, `INSERT INTO users
		(email, password, first_name, last_name, role, is_active, email_verified, date_joined, last_login)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING RETURNING id`,
		normEmail(u.Email), u.PasswordHash, u.FirstName, u.LastName, u.Role,
		u.IsActive, u.EmailVerified, micros(u.DateJoined), nullMicros(u.LastLogin))
}

// UserByID returns the user with this id, or ErrNotFound.
func (s *Store) UserByID(ctx context.Context, id int64) (account.User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := scanUser(s.q.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	return u, notFound(err)
}

// UserByEmail returns the user with this e-mail address (compared
// lower-cased and trimmed), or ErrNotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (account.User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := scanUser(s.q.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE email = $1`, normEmail(email)))
	return u, notFound(err)
}

// UserForUpdate returns the user with this id, or ErrNotFound, and locks
// the row until the transaction ends: SELECT ... FOR UPDATE on PostgreSQL;
// on SQLite the transaction of InTx already holds the database's write
// lock from its BEGIN IMMEDIATE (see Dialect SQLite). It fails outside a
// transaction of InTx, where a lock would end with the statement.
func (s *Store) UserForUpdate(ctx context.Context, id int64) (account.User, error) {
	if s.tx == nil {
		return account.User{}, errors.New("UserForUpdate outside a transaction")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	u, err := scanUser(s.q.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE id = $1`+s.dialect.lockRow, id))
	return u, notFound(err)
}

// setUser runs UPDATE users SET <set> WHERE id = $1 with args as $2...,
// and maps "no such row" to ErrNotFound.
func (s *Store) setUser(ctx context.Context, id int64, set string, args ...any) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE users SET `+set+` WHERE id = $1`, append([]any{id}, args...)...))
	if err == nil && n == 0 {
		err = account.ErrNotFound
	}
	return err
}

// SetLastLogin sets the user's last login time (the zero time clears it).
func (s *Store) SetLastLogin(ctx context.Context, id int64, t time.Time) error {
	return s.setUser(ctx, id, `last_login = $2`, nullMicros(t))
}

// SetPasswordHash sets the user's password hash.
func (s *Store) SetPasswordHash(ctx context.Context, id int64, hash string) error {
	return s.setUser(ctx, id, `password = $2`, hash)
}

// SetNames sets the user's first and last name.
func (s *Store) SetNames(ctx context.Context, id int64, first, last string) error {
	return s.setUser(ctx, id, `first_name = $2, last_name = $3`, first, last)
}

// SetRole sets the user's role.
func (s *Store) SetRole(ctx context.Context, id int64, role int) error {
	return s.setUser(ctx, id, `role = $2`, role)
}

// SetActive enables or disables the user.
func (s *Store) SetActive(ctx context.Context, id int64, active bool) error {
	return s.setUser(ctx, id, `is_active = $2`, active)
}

// SetEmailVerified sets whether the user's address is confirmed.
func (s *Store) SetEmailVerified(ctx context.Context, id int64, verified bool) error {
	return s.setUser(ctx, id, `email_verified = $2`, verified)
}

// DeleteUser deletes a user and, by cascade, every row that belongs to
// them. ErrNotFound when there is no such user.
func (s *Store) DeleteUser(ctx context.Context, id int64) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id))
	if err == nil && n == 0 {
		err = account.ErrNotFound
	}
	return err
}

// ListUsers returns every user, by ascending id.
func (s *Store) ListUsers(ctx context.Context) ([]account.User, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var users []account.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, rows.Err()
}

// Refresh-token whitelist.

// InsertRefresh inserts rt. ErrConflict when its jti is already there.
func (s *Store) InsertRefresh(ctx context.Context, rt account.RefreshToken) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.insertRefresh(ctx, rt)
}

func (s *Store) insertRefresh(ctx context.Context, rt account.RefreshToken) error {
	_, err := s.insertID(ctx, `INSERT INTO refresh_tokens
		(user_id, jti, session, enabled, created, expires, ip, session_started, user_agent)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT DO NOTHING RETURNING id`,
		rt.UserID, rt.JTI, rt.Session, rt.Enabled, micros(rt.Created), micros(rt.Expires), rt.IP,
		nullMicros(rt.Started), rt.UserAgent)
	return err
}

// RotateRefresh atomically replaces the row oldJTI with next, which takes
// the old row's session start and user agent (next's are ignored).
// When no row has oldJTI (replay, logout, forgery), it deletes every row of
// next.Session and returns ErrNotFound; that deletion is committed, unless
// the Store is bound to a transaction of InTx whose fn then fails. When the
// row exists but is disabled, nothing changes and it returns ErrDisabled.
// ErrConflict when next.JTI is taken (and nothing changes).
func (s *Store) RotateRefresh(ctx context.Context, oldJTI string, next account.RefreshToken) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *Store) error {
		// Deleting only an enabled row leaves a disabled one untouched, so
		// no rollback is needed for it, and the row lock the DELETE takes
		// makes concurrent rotations of one jti queue up: the first
		// deletes the row, the others then find nothing. The sub-SELECT
		// runs first and holds the user's row shared until the commit,
		// so a revocation of the user's sessions waits for this rotation
		// and then sees its new row (lockSessions), and a rotation that
		// waited for a revocation, or finds the user disabled, rotates
		// nothing.
		var started sql.NullInt64
		err := tx.q.QueryRowContext(ctx,
			`DELETE FROM refresh_tokens WHERE jti = $1 AND enabled
				AND user_id = (SELECT id FROM users WHERE id = $2 AND is_active`+tx.dialect.shareRow+`)
			RETURNING session_started, user_agent`,
			oldJTI, next.UserID).Scan(&started, &next.UserAgent)
		switch {
		case err == nil:
			next.Started = fromNullMicros(started)
			return tx.insertRefresh(ctx, next)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var disabled bool
		if err := tx.q.QueryRowContext(ctx,
			`SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE jti = $1 AND NOT enabled)`, oldJTI).Scan(&disabled); err != nil {
			return err
		}
		if disabled {
			return account.ErrDisabled
		}
		return account.ErrNotFound
	})
}

// DeleteRefresh deletes the user's rows whose jti is jti or whose session is
// session (an empty jti or session matches nothing), and returns how many
// it deleted.
func (s *Store) DeleteRefresh(ctx context.Context, userID int64, jti, session string) (int, error) {
	var cond []string
	args := []any{userID}
	if jti != "" {
		args = append(args, jti)
		cond = append(cond, "jti = $"+strconv.Itoa(len(args)))
	}
	if session != "" {
		args = append(args, session)
		cond = append(cond, "session = $"+strconv.Itoa(len(args)))
	}
	if len(cond) == 0 {
		return 0, nil
	}
	return s.lockSessions(ctx, `id = $1`, userID, `DELETE FROM refresh_tokens WHERE user_id = $1 AND (`+strings.Join(cond, " OR ")+`)`, args...)
}

// lockSessions runs the DELETE of refresh rows del with args, in a
// transaction that first locks the rows of users that match who, with
// the single argument arg: a rotation in flight holds its user's row
// shared (RotateRefresh), so the lock waits for it to commit, and del,
// a statement of its own, then sees the row that rotation inserted. A
// DELETE alone would wait for the old row, skip it, and miss its
// successor, leaving a session alive after its revocation.
func (s *Store) lockSessions(ctx context.Context, who string, arg any, del string, args ...any) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var n int
	err := s.inTx(ctx, func(tx *Store) error {
		if _, err := tx.q.ExecContext(ctx, `SELECT id FROM users WHERE `+who+tx.dialect.lockRow, arg); err != nil {
			return err
		}
		var err error
		n, err = affected(tx.q.ExecContext(ctx, del, args...))
		return err
	})
	return n, err
}

// RevokeSession deletes every row of a session and returns how many it
// deleted.
func (s *Store) RevokeSession(ctx context.Context, session string) (int, error) {
	return s.lockSessions(ctx, `id IN (SELECT user_id FROM refresh_tokens WHERE session = $1)`, session,
		`DELETE FROM refresh_tokens WHERE session = $1`, session)
}

// RevokeUserSessions deletes every row of a user and returns how many it
// deleted.
func (s *Store) RevokeUserSessions(ctx context.Context, userID int64) (int, error) {
	return s.lockSessions(ctx, `id = $1`, userID, `DELETE FROM refresh_tokens WHERE user_id = $1`, userID)
}

// SessionActive reports whether a session still has at least one row.
func (s *Store) SessionActive(ctx context.Context, session string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var ok bool
	err := s.q.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE session = $1)`, session).Scan(&ok)
	return ok, err
}

// UserRefreshTokens returns the user's rows that expire at or after t,
// newest first.
func (s *Store) UserRefreshTokens(ctx context.Context, userID int64, t time.Time) ([]account.RefreshToken, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT jti, session, user_id, enabled, created, expires, ip, session_started, user_agent
		FROM refresh_tokens WHERE user_id = $1 AND expires >= $2 ORDER BY created DESC, id DESC`, userID, micros(t))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []account.RefreshToken
	for rows.Next() {
		var rt account.RefreshToken
		var created, expires int64
		var started sql.NullInt64
		if err := rows.Scan(&rt.JTI, &rt.Session, &rt.UserID, &rt.Enabled, &created, &expires, &rt.IP, &started, &rt.UserAgent); err != nil {
			return nil, err
		}
		rt.Created, rt.Expires, rt.Started = fromMicros(created), fromMicros(expires), fromNullMicros(started)
		out = append(out, rt)
	}
	return out, rows.Err()
}

// PurgeRefresh deletes rows that expired before t and returns how many.
func (s *Store) PurgeRefresh(ctx context.Context, t time.Time) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return affected(s.q.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE expires < $1`, micros(t)))
}

// Generic token table.

const tokenColumns = `id, user_id, purpose, token, created`

func scanToken(r scanner) (account.Token, error) {
	var t account.Token
	var uid sql.NullInt64
	var created int64
	err := r.Scan(&t.ID, &uid, &t.Purpose, &t.Token, &created)
	t.UserID = uid.Int64
	t.Created = fromMicros(created)
	return t, err
}

func scanTokens(rows *sql.Rows, err error) ([]account.Token, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, t)
	}
	return list, rows.Err()
}

// CreateToken inserts t (t.ID is ignored) and returns the new id. A UserID
// of 0 stores a row that belongs to no user.
func (s *Store) CreateToken(ctx context.Context, t account.Token) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.createToken(ctx, t)
}

func (s *Store) createToken(ctx context.Context, t account.Token) (int64, error) {
	var id int64
	err := s.q.QueryRowContext(ctx, `INSERT INTO tokens (user_id, purpose, token, created)
		VALUES ($1, $2, $3, $4) RETURNING id`,
		nullID(t.UserID), t.Purpose, t.Token, micros(t.Created)).Scan(&id)
	return id, err
}

// CreateTokenWhile inserts t (t.ID is ignored) while a row (purpose,
// token) created at or after notBefore exists, in one statement, and
// returns the new id; ErrNotFound when there is none.
func (s *Store) CreateTokenWhile(ctx context.Context, t account.Token, purpose, token string, notBefore time.Time) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var id int64
	err := s.q.QueryRowContext(ctx, `INSERT INTO tokens (user_id, purpose, token, created)
		SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM tokens
			WHERE purpose = $5 AND token = $6 AND created >= $7)
		RETURNING id`,
		nullID(t.UserID), t.Purpose, t.Token, micros(t.Created), purpose, token, micros(notBefore)).Scan(&id)
	return id, notFound(err)
}

// ReplaceToken deletes the user's rows of t.Purpose and inserts t, in one
// transaction, and returns the new id.
func (s *Store) ReplaceToken(ctx context.Context, t account.Token) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var id int64
	err := s.inTx(ctx, func(tx *Store) error {
		var err error
		if t.UserID == 0 {
			_, err = tx.q.ExecContext(ctx, `DELETE FROM tokens WHERE user_id IS NULL AND purpose = $1`, t.Purpose)
		} else {
			_, err = tx.q.ExecContext(ctx, `DELETE FROM tokens WHERE user_id = $1 AND purpose = $2`, t.UserID, t.Purpose)
		}
		if err != nil {
			return err
		}
		id, err = tx.createToken(ctx, t)
		return err
	})
	return id, err
}

// FindToken returns the newest row (purpose, token) created at or after
// notBefore, without consuming it. When there is none, the older rows
// (purpose, token) are deleted and ErrNotFound returned.
func (s *Store) FindToken(ctx context.Context, purpose, token string, notBefore time.Time) (account.Token, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	t, err := scanToken(s.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE purpose = $1 AND token = $2 AND created >= $3
		ORDER BY created DESC, id DESC LIMIT 1`, purpose, token, micros(notBefore)))
	if !errors.Is(err, sql.ErrNoRows) {
		return t, err
	}
	if _, err := s.q.ExecContext(ctx, `DELETE FROM tokens WHERE purpose = $1 AND token = $2 AND created < $3`,
		purpose, token, micros(notBefore)); err != nil {
		return account.Token{}, err
	}
	return account.Token{}, account.ErrNotFound
}

// ConsumeToken deletes and returns the row (purpose, token) created at or
// after notBefore, in one statement. ErrNotFound when there is none (or
// another caller consumed it first). Should several rows match, all are
// deleted and the newest is returned.
func (s *Store) ConsumeToken(ctx context.Context, purpose, token string, notBefore time.Time) (account.Token, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	list, err := scanTokens(s.q.QueryContext(ctx, `DELETE FROM tokens
		WHERE purpose = $1 AND token = $2 AND created >= $3
		RETURNING `+tokenColumns, purpose, token, micros(notBefore)))
	if err != nil {
		return account.Token{}, err
	}
	if len(list) == 0 {
		return account.Token{}, account.ErrNotFound
	}
	newest := list[0]
	for _, t := range list[1:] {
		if t.Created.After(newest.Created) || (t.Created.Equal(newest.Created) && t.ID > newest.ID) {
			newest = t
		}
	}
	return newest, nil
}

// UserTokens returns a user's rows of purpose created at or after
// notBefore, oldest first.
func (s *Store) UserTokens(ctx context.Context, userID int64, purpose string, notBefore time.Time) ([]account.Token, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return scanTokens(s.q.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE user_id = $1 AND purpose = $2 AND created >= $3
		ORDER BY created, id`, userID, purpose, micros(notBefore)))
}

// NewestTokens returns when the user's n newest rows of purpose created
// at or after notBefore were created, newest first. The index on
// (user_id, purpose, created, id) makes it read n rows at most.
func (s *Store) NewestTokens(ctx context.Context, userID int64, purpose string, notBefore time.Time, n int) ([]time.Time, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT created FROM tokens
		WHERE user_id = $1 AND purpose = $2 AND created >= $3
		ORDER BY created DESC, id DESC LIMIT $4`, userID, purpose, micros(notBefore), n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var times []time.Time
	for rows.Next() {
		var created int64
		if err := rows.Scan(&created); err != nil {
			return nil, err
		}
		times = append(times, fromMicros(created))
	}
	return times, rows.Err()
}

// CountTokens counts the rows (purpose, token) created at or after notBefore.
func (s *Store) CountTokens(ctx context.Context, purpose, token string, notBefore time.Time) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var n int
	err := s.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens
		WHERE purpose = $1 AND token = $2 AND created >= $3`, purpose, token, micros(notBefore)).Scan(&n)
	return n, err
}

// DeleteUserTokens deletes a user's rows of the given purposes (all
// purposes when none is given) and returns how many it deleted.
func (s *Store) DeleteUserTokens(ctx context.Context, userID int64, purposes ...string) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	query := `DELETE FROM tokens WHERE user_id = $1`
	args := []any{userID}
	if len(purposes) > 0 {
		query += ` AND purpose IN (` + placeholders(2, len(purposes)) + `)`
		for _, p := range purposes {
			args = append(args, p)
		}
	}
	return affected(s.q.ExecContext(ctx, query, args...))
}

// DeleteToken deletes the rows (purpose, token) and returns how many.
func (s *Store) DeleteToken(ctx context.Context, purpose, token string) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return affected(s.q.ExecContext(ctx,
		`DELETE FROM tokens WHERE purpose = $1 AND token = $2`, purpose, token))
}

// PurgeTokens deletes the rows of purpose created before t and returns how
// many.
func (s *Store) PurgeTokens(ctx context.Context, purpose string, t time.Time) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return affected(s.q.ExecContext(ctx,
		`DELETE FROM tokens WHERE purpose = $1 AND created < $2`, purpose, micros(t)))
}

// Social accounts.

const socialColumns = `id, user_id, provider, uid, created, last_login`

func scanSocial(r scanner) (account.SocialAccount, error) {
	var a account.SocialAccount
	var created int64
	var last sql.NullInt64
	if err := r.Scan(&a.ID, &a.UserID, &a.Provider, &a.UID, &created, &last); err != nil {
		return account.SocialAccount{}, err
	}
	a.Created = fromMicros(created)
	a.LastLogin = fromNullMicros(last)
	return a, nil
}

// CreateSocialAccount inserts a; ErrConflict when the subject is linked.
func (s *Store) CreateSocialAccount(ctx context.Context, a account.SocialAccount) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if a.Created.IsZero() {
		a.Created = time.Now()
	}
	return s.insertID(ctx, `INSERT INTO social_accounts (user_id, provider, uid, created, last_login)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id`,
		a.UserID, a.Provider, a.UID, micros(a.Created), nullMicros(a.LastLogin))
}

// SocialAccountByUID returns the link of the provider's subject uid.
func (s *Store) SocialAccountByUID(ctx context.Context, provider, uid string) (account.SocialAccount, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	a, err := scanSocial(s.q.QueryRowContext(ctx, `SELECT `+socialColumns+`
		FROM social_accounts WHERE provider = $1 AND uid = $2`, provider, uid))
	if errors.Is(err, sql.ErrNoRows) {
		return account.SocialAccount{}, account.ErrNotFound
	}
	return a, err
}

// SocialAccounts returns the user's links, by ascending id.
func (s *Store) SocialAccounts(ctx context.Context, userID int64) ([]account.SocialAccount, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT `+socialColumns+`
		FROM social_accounts WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.SocialAccount
	for rows.Next() {
		a, err := scanSocial(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, a)
	}
	return list, rows.Err()
}

// DeleteSocialAccount deletes the link id if it is the user's.
func (s *Store) DeleteSocialAccount(ctx context.Context, userID, id int64) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `DELETE FROM social_accounts WHERE id = $1 AND user_id = $2`, id, userID))
	return n > 0, err
}

// SetSocialLogin writes the link's last_login only.
func (s *Store) SetSocialLogin(ctx context.Context, id int64, at time.Time) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE social_accounts SET last_login = $1 WHERE id = $2`, micros(at), id))
	if err == nil && n == 0 {
		return account.ErrNotFound
	}
	return err
}

// MFA authenticators.

// typeRecoveryCodes is the authenticator type whose deletion also deletes
// the recovery codes.
const typeRecoveryCodes = "recovery_codes"

// CreateAuthenticator inserts a (a.ID is ignored; a zero CreatedAt means
// now) and returns the new id. ErrConflict when the user already has one of
// that type.
func (s *Store) CreateAuthenticator(ctx context.Context, a account.Authenticator) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = time.Now()
	}
	data := a.Data
	if data == nil {
		data = []byte{}
	}
	return s.insertID(ctx, `INSERT INTO authenticators
		(user_id, type, data, last_step, created_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT DO NOTHING RETURNING id`,
		a.UserID, a.Type, data, a.LastStep, micros(a.CreatedAt), nullMicros(a.LastUsedAt))
}

// Authenticators returns the user's authenticators, by ascending id.
func (s *Store) Authenticators(ctx context.Context, userID int64) ([]account.Authenticator, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT id, user_id, type, data, last_step, created_at, last_used_at
		FROM authenticators WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.Authenticator
	for rows.Next() {
		var a account.Authenticator
		var created int64
		var used sql.NullInt64
		if err := rows.Scan(&a.ID, &a.UserID, &a.Type, &a.Data, &a.LastStep, &created, &used); err != nil {
			return nil, err
		}
		a.CreatedAt = fromMicros(created)
		a.LastUsedAt = fromNullMicros(used)
		list = append(list, a)
	}
	return list, rows.Err()
}

// DeleteAuthenticators deletes the user's authenticators of the given types
// (all when none is given) and, when that includes recovery_codes, the
// user's recovery codes, in one transaction. It returns how many
// authenticators it deleted.
func (s *Store) DeleteAuthenticators(ctx context.Context, userID int64, types ...string) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	query := `DELETE FROM authenticators WHERE user_id = $1`
	args := []any{userID}
	codes := len(types) == 0
	if len(types) > 0 {
		query += ` AND type IN (` + placeholders(2, len(types)) + `)`
		for _, t := range types {
			args = append(args, t)
			codes = codes || t == typeRecoveryCodes
		}
	}
	var n int
	err := s.inTx(ctx, func(tx *Store) error {
		var err error
		if n, err = affected(tx.q.ExecContext(ctx, query, args...)); err != nil {
			return err
		}
		if codes {
			_, err = tx.q.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID)
		}
		return err
	})
	return n, err
}

// AdvanceTOTPStep sets the user's TOTP last step to step and last used time
// to now, only if step is greater than the stored one, in one statement. It
// reports whether it did: false means the code was already used (replay),
// or that the user has no TOTP authenticator.
func (s *Store) AdvanceTOTPStep(ctx context.Context, userID, step int64, now time.Time) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE authenticators SET last_step = $2, last_used_at = $3
		WHERE user_id = $1 AND type = 'totp' AND last_step < $2`, userID, step, micros(now)))
	return n == 1, err
}

// ReplaceRecoveryCodes replaces the user's recovery-code hashes, in one
// transaction. Duplicate hashes are stored once.
func (s *Store) ReplaceRecoveryCodes(ctx context.Context, userID int64, hashes []string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.inTx(ctx, func(tx *Store) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM recovery_codes WHERE user_id = $1`, userID); err != nil {
			return err
		}
		for _, h := range hashes {
			if _, err := tx.q.ExecContext(ctx, `INSERT INTO recovery_codes (user_id, code_hash)
				VALUES ($1, $2) ON CONFLICT DO NOTHING`, userID, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// ConsumeRecoveryCode deletes the user's code with this hash and reports
// whether one was there; when it was, the user's recovery_codes
// authenticator (if any) is marked used at now. Under concurrent calls one
// caller gets true: the DELETE decides.
func (s *Store) ConsumeRecoveryCode(ctx context.Context, userID int64, hash string, now time.Time) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var ok bool
	err := s.inTx(ctx, func(tx *Store) error {
		n, err := affected(tx.q.ExecContext(ctx,
			`DELETE FROM recovery_codes WHERE user_id = $1 AND code_hash = $2`, userID, hash))
		if err != nil || n == 0 {
			return err
		}
		ok = true
		_, err = tx.q.ExecContext(ctx, `UPDATE authenticators SET last_used_at = $2
			WHERE user_id = $1 AND type = '`+typeRecoveryCodes+`'`, userID, micros(now))
		return err
	})
	return ok && err == nil, err
}

// CountRecoveryCodes counts the user's unused codes.
func (s *Store) CountRecoveryCodes(ctx context.Context, userID int64) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var n int
	err := s.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1`, userID).Scan(&n)
	return n, err
}

// TOTPAuthenticators returns every user's TOTP authenticator, by
// ascending id.
func (s *Store) TOTPAuthenticators(ctx context.Context) ([]account.Authenticator, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT id, user_id, data FROM authenticators
		WHERE type = 'totp' ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.Authenticator
	for rows.Next() {
		a := account.Authenticator{Type: "totp"}
		if err := rows.Scan(&a.ID, &a.UserID, &a.Data); err != nil {
			return nil, err
		}
		list = append(list, a)
	}
	return list, rows.Err()
}

// SwapAuthenticatorData sets the data of authenticator id to data only if
// it still holds old, in one statement.
func (s *Store) SwapAuthenticatorData(ctx context.Context, id int64, old, data []byte) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE authenticators SET data = $2
		WHERE id = $1 AND data = $3`, id, data, old))
	return n == 1, err
}

// Settings.

// LoadOrStoreSetting stores value under name unless a value is already
// there, and returns the stored value.
func (s *Store) LoadOrStoreSetting(ctx context.Context, name string, value []byte) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if value == nil {
		value = []byte{}
	}
	if _, err := s.q.ExecContext(ctx, `INSERT INTO settings (name, value) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, name, value); err != nil {
		return nil, err
	}
	var stored []byte
	if err := s.q.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&stored); err != nil {
		return nil, fmt.Errorf("reading setting %q: %w", name, notFound(err))
	}
	return stored, nil
}

// Setting returns the value stored under name.
func (s *Store) Setting(ctx context.Context, name string) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var value []byte
	err := s.q.QueryRowContext(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&value)
	return value, notFound(err)
}

// DeleteSetting deletes the setting name, if there is one.
func (s *Store) DeleteSetting(ctx context.Context, name string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.q.ExecContext(ctx, `DELETE FROM settings WHERE name = $1`, name)
	return err
}

// Interface guards.
var _ account.Store = (*Store)(nil)

// Passkeys.

const passkeyColumns = `id, user_id, credential_id, public_key, sign_count, name, aaguid, transports,
	user_verified, backup_eligible, backup_state, locked, created, last_used`

func scanPasskey(r scanner) (account.Passkey, error) {
	var p account.Passkey
	var credID, transports string
	var count, created int64
	var last sql.NullInt64
	err := r.Scan(&p.ID, &p.UserID, &credID, &p.PublicKey, &count, &p.Name, &p.AAGUID, &transports,
		&p.UserVerified, &p.BackupEligible, &p.BackupState, &p.Locked, &created, &last)
	if err != nil {
		return account.Passkey{}, err
	}
	if p.CredentialID, err = base64.RawURLEncoding.DecodeString(credID); err != nil {
		return account.Passkey{}, fmt.Errorf("passkey %d: credential id: %v", p.ID, err)
	}
	if transports != "" {
		p.Transports = strings.Split(transports, ",")
	}
	p.SignCount = uint32(count)
	p.Created = fromMicros(created)
	p.LastUsed = fromNullMicros(last)
	return p, nil
}

// CreatePasskey inserts p; ErrConflict when its credential id is taken.
func (s *Store) CreatePasskey(ctx context.Context, p account.Passkey) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	if p.AAGUID == nil {
		p.AAGUID = []byte{}
	}
	return s.insertID(ctx, `INSERT INTO passkeys (user_id, credential_id, public_key, sign_count, name, aaguid, transports,
		user_verified, backup_eligible, backup_state, locked, created, last_used)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id`,
		p.UserID, base64.RawURLEncoding.EncodeToString(p.CredentialID), p.PublicKey, int64(p.SignCount), p.Name, p.AAGUID,
		strings.Join(p.Transports, ","), p.UserVerified, p.BackupEligible, p.BackupState, p.Locked, micros(p.Created), nullMicros(p.LastUsed))
}

// Passkeys returns the user's passkeys, by ascending id.
func (s *Store) Passkeys(ctx context.Context, userID int64) ([]account.Passkey, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT `+passkeyColumns+` FROM passkeys WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.Passkey
	for rows.Next() {
		p, err := scanPasskey(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, p)
	}
	return list, rows.Err()
}

// PasskeyByCredentialID returns the passkey of a credential id.
func (s *Store) PasskeyByCredentialID(ctx context.Context, credentialID []byte) (account.Passkey, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	p, err := scanPasskey(s.q.QueryRowContext(ctx, `SELECT `+passkeyColumns+` FROM passkeys WHERE credential_id = $1`,
		base64.RawURLEncoding.EncodeToString(credentialID)))
	if errors.Is(err, sql.ErrNoRows) {
		return account.Passkey{}, account.ErrNotFound
	}
	return p, err
}

// RenamePasskey writes the name of the user's passkey id only.
func (s *Store) RenamePasskey(ctx context.Context, userID, id int64, name string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3`, name, id, userID))
	return n > 0, err
}

// DeletePasskeys deletes the user's passkeys of ids (all when none).
func (s *Store) DeletePasskeys(ctx context.Context, userID int64, ids ...int64) (int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if len(ids) == 0 {
		return affected(s.q.ExecContext(ctx, `DELETE FROM passkeys WHERE user_id = $1`, userID))
	}
	total := 0
	for _, id := range ids {
		n, err := affected(s.q.ExecContext(ctx, `DELETE FROM passkeys WHERE user_id = $1 AND id = $2`, userID, id))
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// UsePasskey moves the counter of passkey id from old to next, and
// last_used to at, if it is still old and the passkey is not locked.
func (s *Store) UsePasskey(ctx context.Context, id int64, old, next uint32, at time.Time) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE passkeys SET sign_count = $1, last_used = $2
		WHERE id = $3 AND sign_count = $4 AND NOT locked`, int64(next), micros(at), id, int64(old)))
	return n > 0, err
}

// LockPasskey sets the passkey's locked flag only.
func (s *Store) LockPasskey(ctx context.Context, id int64) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE passkeys SET locked = $1 WHERE id = $2`, true, id))
	if err == nil && n == 0 {
		return account.ErrNotFound
	}
	return err
}

// Personal access tokens.

const personalTokenColumns = `id, user_id, name, token_hash, role, created, expires, last_used`

func scanPersonalToken(r scanner) (account.PersonalToken, error) {
	var p account.PersonalToken
	var created, expires int64
	var last sql.NullInt64
	if err := r.Scan(&p.ID, &p.UserID, &p.Name, &p.Hash, &p.Role, &created, &expires, &last); err != nil {
		return account.PersonalToken{}, err
	}
	p.Created, p.Expires, p.LastUsed = fromMicros(created), fromMicros(expires), fromNullMicros(last)
	return p, nil
}

// CreatePersonalToken inserts p; ErrConflict when its hash is taken.
func (s *Store) CreatePersonalToken(ctx context.Context, p account.PersonalToken) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.insertID(ctx, `INSERT INTO personal_tokens (user_id, name, token_hash, role, created, expires, last_used)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id`,
		p.UserID, p.Name, p.Hash, p.Role, micros(p.Created), micros(p.Expires), nullMicros(p.LastUsed))
}

// PersonalTokens returns the user's tokens, by ascending id.
func (s *Store) PersonalTokens(ctx context.Context, userID int64) ([]account.PersonalToken, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	rows, err := s.q.QueryContext(ctx, `SELECT `+personalTokenColumns+` FROM personal_tokens WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var list []account.PersonalToken
	for rows.Next() {
		p, err := scanPersonalToken(rows)
		if err != nil {
			return nil, err
		}
		list = append(list, p)
	}
	return list, rows.Err()
}

// PersonalTokenByHash returns the token of a hash.
func (s *Store) PersonalTokenByHash(ctx context.Context, hash string) (account.PersonalToken, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	p, err := scanPersonalToken(s.q.QueryRowContext(ctx, `SELECT `+personalTokenColumns+` FROM personal_tokens WHERE token_hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return account.PersonalToken{}, account.ErrNotFound
	}
	return p, err
}

// DeletePersonalToken deletes the user's token id.
func (s *Store) DeletePersonalToken(ctx context.Context, userID, id int64) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `DELETE FROM personal_tokens WHERE id = $1 AND user_id = $2`, id, userID))
	return n > 0, err
}

// SetPersonalTokenUsed writes the token's last_used only.
func (s *Store) SetPersonalTokenUsed(ctx context.Context, id int64, at time.Time) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := affected(s.q.ExecContext(ctx, `UPDATE personal_tokens SET last_used = $1 WHERE id = $2`, micros(at), id))
	if err == nil && n == 0 {
		return account.ErrNotFound
	}
	return err
}
