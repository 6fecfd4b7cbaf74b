#!/usr/bin/env bash
# Measures the database-bound flows on SQLite and on PostgreSQL, each for a
# fixed time with concurrent clients on loopback (bench/load):
#
#   refresh     POST /auth/refresh/: each client logs in once, then rotates
#               its refresh cookie in a loop (one write transaction each).
#   mfa-wrong   POST /auth/mfa/verify/ with a wrong code against a live
#               challenge, MFA attempt limits and throttles off: the cost of
#               a refused verification (challenge lookup, secret
#               decryption, code match, the turn on the user's row, failure
#               row) without the reads of the limits' counters.
#   mfa-right   POST /auth/mfa/verify/ with a right code: a code is
#               accepted once per step and user, so USERS accounts are
#               signed up, enrolled and logged in twice beforehand (not
#               timed; three password hashes each), then every one of
#               the 2 × USERS challenges is answered (the count ends that
#               run, not the duration): challenge spent, failures cleared,
#               TOTP step moved, session opened, tokens signed.
#
#   bash bench/flows.sh [duration=10s] [clients=32] [users=1000] [modes]
#
# modes picks the flows, in that order, from "refresh mfa-wrong mfa-right"
# (the default, all three): e.g. "refresh mfa-wrong" for a revision of the
# code from before sign-up without verification, which mfa-right needs.
#
# PostgreSQL: JWT_ALLAUTH_BENCH_POSTGRES_DSN (default: the local test
# server); a fresh schema is created and dropped. Skipped when unreachable.
duration=${1:-10s}
clients=${2:-32}
users=${3:-1000}
modes=${4:-refresh mfa-wrong mfa-right}
for m in $modes; do
	case $m in refresh | mfa-wrong | mfa-right) ;; *) echo "unknown mode $m (refresh, mfa-wrong, mfa-right)" >&2; exit 2 ;; esac
done
port=18483
password='Quartz-Lantern-8812'
pg_dsn=${JWT_ALLAUTH_BENCH_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
. "$(dirname "$0")/lib.sh"

schema=""
drop_schema() {
	if [ -n "$schema" ]; then psql -q "$pg_dsn" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1; fi
}
bench_cleanup_extra=drop_schema

build_caddy
build_load

run() { # name store-line
	local name=$1 store=$2
	write_caddyfile "$store" "		mfa_totp_mode optional
		mfa_max_attempts 0
		mfa_challenge_max_attempts 0
		throttle login_ip off
		throttle login_email off
		throttle mfa_verify_ip off
		throttle registration_ip off"
	create_user "bench-$name@example.com" "$password"
	start_caddy "$work/caddy-$name.log" /auth/login/
	echo "== $name"
	echo "caddy idle memory (VmRSS): $(caddy_idle_memory)"
	local args=(-base "http://127.0.0.1:$port/auth" -email "bench-$name@example.com" -password "$password" -c "$clients" -d "$duration")
	for m in $modes; do
		case $m in
		mfa-right)
			"$load" -mode mfa-right -base "http://127.0.0.1:$port/auth" -email "bench-$name-%d@example.com" \
				-password "$password" -c "$clients" -users "$users"
			;;
		*) "$load" -mode "$m" "${args[@]}" ;;
		esac
	done
	echo "caddy peak memory (VmHWM): $(caddy_peak_memory)"
	stop_caddy
}

run sqlite "store sqlite $work/bench.db"
if ! command -v psql >/dev/null; then
	echo "== postgres: skipped (psql, which makes its schema, is not installed)"
elif psql -q "$pg_dsn" -c 'SELECT 1' >/dev/null 2>&1; then
	schema="bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
	psql -q "$pg_dsn" -c "CREATE SCHEMA $schema" >/dev/null
	case $pg_dsn in *\?*) sep='&' ;; *) sep='?' ;; esac
	run postgres "store postgres ${pg_dsn}${sep}search_path=$schema"
else
	echo "== postgres: skipped (no server at JWT_ALLAUTH_BENCH_POSTGRES_DSN)"
fi
