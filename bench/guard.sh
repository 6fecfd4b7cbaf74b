#!/usr/bin/env bash
# Measures what the guard costs: requests/s of a `respond` route behind
# jwt_allauth_guard against the same route without it, in one run, with
# wrk on loopback, two ways (see below). Prints each round's rates and
# ratio, and the median ratio of each way.
#
#   bash bench/guard.sh [duration=5s] [connections=32] [rounds=8] [alg]
#
# alg is how the realm signs its tokens: EdDSA (the default: no
# signing_key, so the realm's generated Ed25519 key) or HS256 (a
# signing_key). Without a 4th argument, JWT_ALLAUTH_BENCH_ALG gives it.
duration=${1:-5s}
conns=${2:-32}
rounds=${3:-8}
alg=${4:-${JWT_ALLAUTH_BENCH_ALG:-EdDSA}}
port=18480
. "$(dirname "$0")/lib.sh"
need_wrk

case $alg in
EdDSA) realm_options="" ;;
HS256) realm_options="		signing_key bench-guard-hs256-shared-secret-0123456789" ;;
*)
	echo "alg must be EdDSA or HS256, got $alg" >&2
	exit 2
	;;
esac
echo "realm signing: $alg"

build_caddy

write_caddyfile "store sqlite $work/bench.db" "$realm_options" '	handle /open {
		respond "ok"
	}
	handle /guarded {
		jwt_allauth_guard
		respond "ok"
	}'
create_user bench@example.com Quiet-Harbor-7731
start_caddy "$work/caddy.log" /open

token=$(login_token bench@example.com Quiet-Harbor-7731)
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/guarded")" = 401 ] || { echo "guard let a request without token through" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$port/guarded")" = 200 ] || { echo "guard refused the token" >&2; exit 1; }

auth="Authorization: Bearer $token"
wrk_rate "$conns" "$duration" /open "$auth" >/dev/null # warm-up
# Two figures. The same request to both routes, the Authorization header
# included, so the difference is the guard's own work (checking the token,
# setting the placeholders), not the bytes on the wire; and the guarded
# route with its token against the plain route as a client without a
# token calls it, which is what putting the guard in front costs a user.
echo "same request to both routes (the guard's own work):"
ratio_rounds "guard, same request" "$rounds" "$conns" "$duration" /open "$auth" /guarded "$auth"
echo "plain route without the header (what a user sees):"
ratio_rounds "guard, plain route without header" "$rounds" "$conns" "$duration" /open "" /guarded "$auth"
