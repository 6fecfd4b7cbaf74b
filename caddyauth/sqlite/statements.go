package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"

	sqlite "modernc.org/sqlite"
)

// maxStatements bounds the statements one connection keeps prepared. The
// store's queries are fixed strings, a few dozen of them; a query built
// with a varying number of placeholders adds one per length.
const maxStatements = 256

// connector opens connections that keep their prepared statements: the
// driver parses and plans a query on every call otherwise, which for the
// store's short queries costs about as much as running them.
type connector struct {
	dsn string
	drv sqlite.Driver
}

// Connect opens a connection of the database.
func (c *connector) Connect(context.Context) (driver.Conn, error) {
	raw, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	conn, ok := raw.(sqliteConn)
	if !ok {
		raw.Close()
		return nil, errors.New("sqlite driver connection lacks context methods")
	}
	return &stmtConn{sqliteConn: conn, stmts: map[string]*keptStmt{}}, nil
}

// Driver returns the driver the connections come from.
func (c *connector) Driver() driver.Driver { return &c.drv }

// sqliteConn is what stmtConn uses of the driver's connection. Its
// QueryContext and ExecContext are left out on purpose: without them,
// database/sql prepares every query through PrepareContext, where the
// kept statement is found.
type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// stmtConn is a connection that keeps what it prepared, by query text.
// database/sql uses a connection from one goroutine at a time, so the
// map needs no lock.
type stmtConn struct {
	sqliteConn
	stmts map[string]*keptStmt
}

// Prepare is PrepareContext without a context.
func (c *stmtConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns the kept statement of query, preparing it on
// first use. A kept statement still in use (database/sql closes what it
// prepares once done with it: after the rows of a query, or when a
// statement prepared through it is closed) is not handed out again: the
// caller gets a fresh one, closed as usual after use.
func (c *stmtConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	if s, ok := c.stmts[query]; ok {
		if s.inUse {
			return c.sqliteConn.PrepareContext(ctx, query)
		}
		s.inUse = true
		return s, nil
	}
	st, err := c.sqliteConn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(c.stmts) >= maxStatements {
		c.forget()
	}
	s := &keptStmt{stmt: st.(sqliteStmt), inUse: true}
	c.stmts[query] = s
	return s, nil
}

// forget closes the kept statements not in use and drops them all; one
// in use is closed when its user closes it.
func (c *stmtConn) forget() {
	for q, s := range c.stmts {
		if s.inUse {
			s.dropped = true
		} else {
			s.stmt.Close()
		}
		delete(c.stmts, q)
	}
}

// Close closes the kept statements, then the connection.
func (c *stmtConn) Close() error {
	c.forget()
	return c.sqliteConn.Close()
}

// sqliteStmt is what keptStmt uses of the driver's statement.
type sqliteStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

// keptStmt is a prepared statement that stays open after use, for the
// next call with the same query.
type keptStmt struct {
	stmt sqliteStmt
	// inUse is true from when the connection hands the statement out
	// until its user closes it; dropped when the connection forgot it
	// meanwhile and it is to be closed then.
	inUse, dropped bool
}

// Close frees the statement for the next call, and closes it when the
// connection forgot it meanwhile.
func (s *keptStmt) Close() error {
	s.inUse = false
	if s.dropped {
		return s.stmt.Close()
	}
	return nil
}

// NumInput returns the statement's number of placeholders.
func (s *keptStmt) NumInput() int { return s.stmt.NumInput() }

// Exec is ExecContext without a context.
func (s *keptStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.stmt.Exec(args)
}

// Query is QueryContext without a context.
func (s *keptStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.stmt.Query(args)
}

// ExecContext runs the statement.
func (s *keptStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.stmt.ExecContext(ctx, args)
}

// QueryContext runs the statement.
func (s *keptStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.stmt.QueryContext(ctx, args)
}
