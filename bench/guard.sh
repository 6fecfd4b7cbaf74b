#!/usr/bin/env bash
# Measures what the guard costs: requests/s of a `respond` route behind
# jwt_allauth_guard against the same route without it, in one run, with
# wrk on loopback. Both get the same requests, Authorization header
# included, so the difference is the guard's own work (checking the token,
# setting the placeholders), not the bytes on the wire. Prints both rates
# and their ratio.
#
#   bash bench/guard.sh [duration=5s] [connections=32] [rounds=8]
duration=${1:-5s}
conns=${2:-32}
rounds=${3:-8}
port=18480
. "$(dirname "$0")/lib.sh"
need_wrk

build_caddy

write_caddyfile "store sqlite $work/bench.db" "" '	handle /open {
		respond "ok"
	}
	handle /guarded {
		jwt_allauth_guard
		respond "ok"
	}'
create_user bench@example.com Quiet-Harbor-7731
start_caddy "$work/caddy.log" /open

token=$(curl -sf -H 'Content-Type: application/json' \
	-d '{"email":"bench@example.com","password":"Quiet-Harbor-7731"}' \
	"http://127.0.0.1:$port/auth/login/" | sed -n 's/.*"access":"\([^"]*\)".*/\1/p')
[ -n "$token" ] || { echo "login failed" >&2; cat "$work/caddy.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/guarded")" = 401 ] || { echo "guard let a request without token through" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/guarded")" = 200 ] || { echo "guard refused the token" >&2; exit 1; }

rate() { # path [header]
	if [ $# -gt 1 ]; then
		wrk -t2 -c"$conns" -d"$duration" -H "$2" "http://127.0.0.1:$port$1"
	else
		wrk -t2 -c"$conns" -d"$duration" "http://127.0.0.1:$port$1"
	fi | awk '/Requests\/sec/ {print $2}'
}

rate /open "Authorization: Bearer $token" >/dev/null # warm-up
# Short rounds, alternating which route goes first, so drift in the
# machine's load hits both sides alike; the median of the per-round ratios
# is the figure, the means are shown beside it.
ratios=()
open_sum=0 guarded_sum=0
for i in $(seq 1 "$rounds"); do
	if [ $((i % 2)) -eq 1 ]; then
		o=$(rate /open "Authorization: Bearer $token"); g=$(rate /guarded "Authorization: Bearer $token")
	else
		g=$(rate /guarded "Authorization: Bearer $token"); o=$(rate /open "Authorization: Bearer $token")
	fi
	r=$(awk -v o="$o" -v g="$g" 'BEGIN {printf "%.3f", g/o}')
	ratios+=("$r")
	echo "round $i: open $o req/s, guarded $g req/s, ratio $r"
	open_sum=$(awk -v a="$open_sum" -v b="$o" 'BEGIN {print a + b}')
	guarded_sum=$(awk -v a="$guarded_sum" -v b="$g" 'BEGIN {print a + b}')
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f", (v[NR/2]+v[NR/2+1])/2}')
awk -v o="$open_sum" -v g="$guarded_sum" -v n="$rounds" -v m="$median" \
	'BEGIN {printf "mean: open %.0f req/s, guarded %.0f req/s; median ratio guarded/open %s\n", o/n, g/n, m}'
