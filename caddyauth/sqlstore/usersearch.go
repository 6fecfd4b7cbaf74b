package sqlstore

import (
	"context"
	"strconv"
	"strings"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// likeEscaper escapes what LIKE reads as wildcards, and its escape
// character, so that a prefix matches only itself.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SearchUsers returns the users q selects, by ascending id, from q.Offset
// on and at most q.Limit of them, with how many q selects in all. The
// prefix is compared with the stored address (lower-cased), literally:
// LIKE with its wildcards escaped, in both dialects.
func (s *Store) SearchUsers(ctx context.Context, q account.UserQuery) ([]account.User, int, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.EmailPrefix != "" {
		where = append(where, `email LIKE `+arg(likeEscaper.Replace(normEmail(q.EmailPrefix))+"%")+` ESCAPE '\'`)
	}
	if q.Role != nil {
		where = append(where, `role = `+arg(*q.Role))
	}
	if q.Active != nil {
		where = append(where, `is_active = `+arg(*q.Active))
	}
	cond := ""
	if len(where) > 0 {
		cond = ` WHERE ` + strings.Join(where, ` AND `)
	}
	var count int
	if err := s.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM users`+cond, args...).Scan(&count); err != nil {
		return nil, 0, err
	}
	if q.Limit <= 0 || q.Offset >= count {
		return nil, count, nil
	}
	page := cond + ` ORDER BY id LIMIT ` + arg(q.Limit) + ` OFFSET ` + arg(max(q.Offset, 0))
	rows, err := s.q.QueryContext(ctx, `SELECT `+userColumns+` FROM users`+page, args...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var users []account.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, err
		}
		users = append(users, u)
	}
	return users, count, rows.Err()
}
