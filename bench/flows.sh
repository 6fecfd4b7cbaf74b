#!/usr/bin/env bash
# Measures the database-bound flows on SQLite and on PostgreSQL, each for a
# fixed time with concurrent clients on loopback (bench/load):
#
#   refresh     POST /auth/refresh/: each client logs in once, then rotates
#               its refresh cookie in a loop (one write transaction each).
#   mfa verify  POST /auth/mfa/verify/ with a wrong code against a live
#               challenge, MFA attempt limits and throttles off: the cost of
#               a refused verification (challenge lookup, lockout check,
#               secret decryption, code match, failure row). A successful
#               verify needs a fresh TOTP step per user, so it is not
#               measured in a loop.
#
#   bash bench/flows.sh [duration=10s] [clients=32]
#
# PostgreSQL: JWT_ALLAUTH_BENCH_POSTGRES_DSN (default: the local test
# server); a fresh schema is created and dropped. Skipped when unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10s}
clients=${2:-32}
port=18483
password='Quartz-Lantern-8812'
pg_dsn=${JWT_ALLAUTH_BENCH_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

work=$(mktemp -d)
caddy_pid=""
schema=""
cleanup() {
	[ -n "$caddy_pid" ] && kill "$caddy_pid" 2>/dev/null
	wait 2>/dev/null
	[ -n "$schema" ] && psql -q "$pg_dsn" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT

echo "building Caddy with the plugin (./cmd/caddy), and the load generator..."
go build -o "$work/caddy" ./cmd/caddy
go build -o "$work/load" ./bench/load
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"

run() { # name store-line
	local name=$1 store=$2
	cat >"$work/Caddyfile" <<CADDY
{
	admin off
	http_port $port
	log {
		level ERROR
	}
	jwt_allauth {
		$store
		cookie_insecure
		public_url http://127.0.0.1:$port
		mfa_totp_mode optional
		mfa_max_attempts 0
		mfa_challenge_max_attempts 0
		throttle login_ip off
		throttle login_email off
		throttle mfa_verify_ip off
	}
}
http://127.0.0.1:$port {
	jwt_allauth {
		prefix /auth
	}
}
CADDY
	printf '%s\n' "$password" | "$work/caddy" jwt-allauth create-user --config "$work/Caddyfile" \
		--email "bench-$name@example.com" --password-stdin >/dev/null
	"$work/caddy" run --config "$work/Caddyfile" >"$work/caddy-$name.log" 2>&1 &
	caddy_pid=$!
	for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/auth/login/" && break; sleep 0.2; done
	local args=(-base "http://127.0.0.1:$port/auth" -email "bench-$name@example.com" -password "$password" -c "$clients" -d "$duration")
	echo "== $name"
	"$work/load" -mode refresh "${args[@]}"
	"$work/load" -mode mfa-wrong "${args[@]}"
	echo "caddy peak memory (VmHWM): $(awk '/VmHWM/ {print $2, $3}' "/proc/$caddy_pid/status")"
	kill "$caddy_pid"
	wait "$caddy_pid" 2>/dev/null || true
	caddy_pid=""
}

run sqlite "store sqlite $work/bench.db"
if psql -q "$pg_dsn" -c 'SELECT 1' >/dev/null 2>&1; then
	schema="bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
	psql -q "$pg_dsn" -c "CREATE SCHEMA $schema" >/dev/null
	case $pg_dsn in *\?*) sep='&' ;; *) sep='?' ;; esac
	run postgres "store postgres ${pg_dsn}${sep}search_path=$schema"
else
	echo "== postgres: skipped (no server at JWT_ALLAUTH_BENCH_POSTGRES_DSN)"
fi
