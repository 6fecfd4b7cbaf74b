#!/usr/bin/env bash
# Measures a peer beside our guard: caddy-security's `authorize` (an
# authorization policy checking a JWT) and jwt_allauth_guard, each against
# the same plain `respond` route, in one Caddy and one run, with wrk on
# loopback, the two ways bench/guard.sh measures the guard: the same
# request to both routes, the Authorization header included (the checker's
# own work), and the plain route without the header against the checked
# route with its token (what putting the checker in front costs a user).
# Each round's rates and ratio, then four "LABEL: median ratio" lines
# (bench/lib.sh ratio_rounds); the ratios, each measured against /open side
# by side, are what compares us and the peer.
#
#   bash bench/peers.sh [duration=5s] [connections=32] [rounds=8]
#
# The Caddy: one binary with both plugins, built with xcaddy: Caddy at the
# version xcaddy.json records, our plugin from the working tree, the peer
# at $peer below. The peer's go-authcrunch imports
# golang.org/x/crypto/openpgp, which x/crypto v0.59.0 (our go.mod) no
# longer has, so the build pins x/crypto to v0.57.0, the version that Caddy
# requires; our plugin's users of x/crypto (argon2, bcrypt: passwords, not
# the guard) build against it as well. caddy-trace, a dependency of the
# peer, needs GOSUMDB=off. The build takes minutes: with
# JWT_ALLAUTH_BENCH_PEER_CACHE=<dir> (outside the working tree, or under
# bench/) the binary is kept in that directory, named after a hash of what
# goes into it (the Go version, the versions here, the working tree's files
# outside bench/), and used again while they are the same; without it the
# binary is built under $work and removed with it. When the build fails, the script prints its last lines and exits 1,
# before any figure. JWT_ALLAUTH_BENCH_CADDY (bench/compare.sh) is refused:
# its Caddy has no peer.
#
# Both check an HS256 token, the one algorithm both take (ours HS256 or
# Ed25519; the peer HMAC, RSA or ECDSA): our realm signs with a
# `signing_key`, unlike bench/guard.sh, which measures the default Ed25519.
# Our token comes from a login; the peer's is signed here with openssl,
# under the same test key. Before measuring, each checked route must answer
# 200 with its token and refuse (401, 403 or 302) a request without one,
# and the peer must refuse its token signed with another key, so that a
# misconfigured checker is never measured. Both keep each token they have
# accepted in a cache by the token's text (ours until the token's exp):
# for a token seen before, neither checks a signature.
duration=${1:-5s}
conns=${2:-32}
rounds=${3:-8}
port=18486
peer_cache=${JWT_ALLAUTH_BENCH_PEER_CACHE:+$(realpath -m "$JWT_ALLAUTH_BENCH_PEER_CACHE")}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
need_wrk
command -v openssl >/dev/null || { echo "openssl is needed to sign the peer's token" >&2; exit 1; }
if [ -n "$prebuilt_caddy" ]; then
	echo "bench/peers.sh builds its own Caddy (both plugins); JWT_ALLAUTH_BENCH_CADDY is not for it" >&2
	exit 2
fi

xcaddy=github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
peer=github.com/greenpau/caddy-security@v1.1.64
crypto_pin=golang.org/x/crypto=golang.org/x/crypto@v0.57.0
caddy_version=$(sed -n 's/.*"caddy_version": *"\([^"]*\)".*/\1/p' xcaddy.json)
[ -n "$caddy_version" ] || { echo "xcaddy.json names no caddy_version" >&2; exit 1; }
key=bench-only-test-key-not-a-secret-0123456789

# build_inputs prints a hash of what goes into the binary.
build_inputs() {
	{
		go version
		echo "$xcaddy $caddy_version $peer $crypto_pin"
		git ls-files -z -co --exclude-standard -- . ':(exclude)bench' | while IFS= read -r -d '' f; do
			if [ -f "$f" ]; then sha256sum "$f"; fi
		done
	} | sha256sum | cut -c1-16
}

# build_peers points $caddy at a Caddy with both plugins, building it
# unless the cache holds it.
build_peers() {
	local out="$work/caddy-peers"
	if [ -n "$peer_cache" ]; then
		mkdir -p "$peer_cache"
		out="$peer_cache/caddy-peers-$(build_inputs)"
		if [ -x "$out" ]; then
			echo "Caddy with both plugins: $out (JWT_ALLAUTH_BENCH_PEER_CACHE)"
			caddy=$out
			return
		fi
	fi
	echo "building Caddy $caddy_version with the plugin (working tree) and $peer (xcaddy, takes minutes)..."
	if ! GOSUMDB=off TMPDIR="$work" go run "$xcaddy" build "$caddy_version" --output "$work/caddy-build" \
		--with github.com/caddy-jwt-allauth/caddy-jwt-allauth@v0.0.0=. --with "$peer" \
		--replace "$crypto_pin" >"$work/build.log" 2>&1; then
		echo "could not build Caddy with $peer; the build's last lines:" >&2
		tail -n 30 "$work/build.log" >&2
		exit 1
	fi
	if [ "$out" != "$work/caddy-peers" ]; then
		cp "$work/caddy-build" "$out.$$"
		mv "$out.$$" "$out"
	else
		mv "$work/caddy-build" "$out"
	fi
	caddy=$out
}

# sign_hs256 KEY CLAIMS prints a JWT of the JSON CLAIMS signed HS256 with KEY.
sign_hs256() {
	local h p
	h=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '%s' "$2" | b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$1" -binary | b64url)"
}
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

# status PATH [HEADER] prints the HTTP status of GET PATH.
status() {
	local args=(-s -o /dev/null -w '%{http_code}')
	if [ $# -gt 1 ]; then args+=(-H "$2"); fi
	curl "${args[@]}" "http://127.0.0.1:$port$1"
}

build_peers

# The peer's policy: the token from the Authorization header as a bearer
# token, verified with the shared key; a role the peer's token carries; a
# refusal answered as such rather than redirected to a login portal (there
# is none). The access tokens live 12 hours, so that no run outlasts them.
write_caddyfile "store sqlite $work/bench.db" "		signing_key $key
		access_ttl 12h" '	handle /open {
		respond "ok"
	}
	handle /guarded {
		jwt_allauth_guard
		respond "ok"
	}
	handle /peer {
		authorize with benchpolicy
		respond "ok"
	}' "	security {
		authorization policy benchpolicy {
			crypto key verify $key
			validate bearer header
			disable auth redirect
			allow roles bench/user
		}
	}"
create_user bench@example.com Quiet-Harbor-7731
start_caddy "$work/caddy.log" /open

token=$(login_token bench@example.com Quiet-Harbor-7731)
now=$(date +%s)
claims="{\"sub\":\"bench\",\"email\":\"bench@example.com\",\"roles\":[\"bench/user\"],\"iat\":$now,\"exp\":$((now + 43200))}"
peer_token=$(sign_hs256 "$key" "$claims")
forged=$(sign_hs256 "another-test-key-not-the-peers-0123456789" "$claims")
auth="Authorization: Bearer $token"
peer_auth="Authorization: Bearer $peer_token"

# refused CODE: a refusal, not the route's answer nor a server error.
refused() { case $1 in 401 | 403 | 302) return 0 ;; *) return 1 ;; esac; }
[ "$(status /guarded)" = 401 ] || { echo "guard let a request without token through" >&2; exit 1; }
[ "$(status /guarded "$auth")" = 200 ] || { echo "guard refused the token" >&2; exit 1; }
none=$(status /peer)
refused "$none" || { echo "peer answered $none to a request without token" >&2; cat "$work/caddy.log"; exit 1; }
bad=$(status /peer "Authorization: Bearer $forged")
refused "$bad" || { echo "peer answered $bad to a token signed with another key" >&2; cat "$work/caddy.log"; exit 1; }
code=$(status /peer "$peer_auth")
[ "$code" = 200 ] || { echo "peer answered $code to its token" >&2; cat "$work/caddy.log"; exit 1; }
echo "checked: /guarded and /peer answer 200 with their tokens; the peer answers $none without one, $bad to a token signed with another key"
echo "peer: $peer (Caddy $caddy_version, both plugins in one binary)"

wrk_rate "$conns" "$duration" /open "$auth" >/dev/null # warm-up
echo "same request to both routes (the checker's own work):"
ratio_rounds "guard, same request" "$rounds" "$conns" "$duration" /open "$auth" /guarded "$auth"
ratio_rounds "peer caddy-security authorize, same request" "$rounds" "$conns" "$duration" /open "$peer_auth" /peer "$peer_auth"
echo "plain route without the header (what a user sees):"
ratio_rounds "guard, plain route without header" "$rounds" "$conns" "$duration" /open "" /guarded "$auth"
ratio_rounds "peer caddy-security authorize, plain route without header" "$rounds" "$conns" "$duration" /open "" /peer "$peer_auth"

if [ "$(status /guarded "$auth")" != 200 ] || [ "$(status /peer "$peer_auth")" != 200 ]; then
	echo "a token stopped working during the run: the figures above are void" >&2
	exit 1
fi
