# What the benchmark scripts share; each sources it after setting `port`:
#
#   port=18480
#   . "$(dirname "$0")/lib.sh"
#
# It turns on strict mode, changes to the repository root, makes a work
# directory $work (Caddy's data and config go there too) and removes it on
# exit, with the Caddy it started. A script with more to undo sets
# bench_cleanup_extra to a function name.
#
# Prebuilt binaries (bench/compare.sh sets both): JWT_ALLAUTH_BENCH_CADDY
# names a Caddy with the plugin that build_caddy uses instead of building
# ./cmd/caddy, JWT_ALLAUTH_BENCH_LOAD a bench/load that build_load uses
# instead of building it. Relative paths are taken from where the script
# was started.
set -euo pipefail
prebuilt_caddy=${JWT_ALLAUTH_BENCH_CADDY:+$(realpath -e "$JWT_ALLAUTH_BENCH_CADDY")}
prebuilt_load=${JWT_ALLAUTH_BENCH_LOAD:+$(realpath -e "$JWT_ALLAUTH_BENCH_LOAD")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
caddy="$work/caddy"
load="$work/load"
caddy_pid=""
bench_cleanup_extra=""
bench_cleanup() {
	if [ -n "$caddy_pid" ]; then kill "$caddy_pid" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	if [ -n "$bench_cleanup_extra" ]; then "$bench_cleanup_extra" || true; fi
	rm -rf "$work"
}
trap bench_cleanup EXIT
export XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config"

# need_wrk stops the script when wrk is missing.
need_wrk() {
	command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
}

# build_caddy builds Caddy with the plugin into $caddy, or points $caddy
# at JWT_ALLAUTH_BENCH_CADDY.
build_caddy() {
	if [ -n "$prebuilt_caddy" ]; then
		echo "Caddy: $prebuilt_caddy (JWT_ALLAUTH_BENCH_CADDY)"
		caddy=$prebuilt_caddy
	else
		echo "building Caddy with the plugin (./cmd/caddy)..."
		go build -o "$caddy" ./cmd/caddy
	fi
}

# build_load builds the load generator (./bench/load) into $load, or points
# $load at JWT_ALLAUTH_BENCH_LOAD.
build_load() {
	if [ -n "$prebuilt_load" ]; then
		echo "load generator: $prebuilt_load (JWT_ALLAUTH_BENCH_LOAD)"
		load=$prebuilt_load
	else
		echo "building the load generator (./bench/load)..."
		go build -o "$load" ./bench/load
	fi
}

# write_caddyfile STORE [REALM-OPTIONS [SITE-ROUTES [GLOBAL-OPTIONS]]]
# writes $work/Caddyfile: Caddy on 127.0.0.1:$port (plain HTTP, no admin
# endpoint, errors only in the log), the realm with the STORE line,
# cookie_insecure and REALM-OPTIONS, GLOBAL-OPTIONS after it in the global
# block (another app's options), and a site with the endpoints under /auth
# and SITE-ROUTES.
write_caddyfile() {
	local store=$1 options=${2:-} routes=${3:-} globals=${4:-} nl=$'\n'
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
		public_url http://127.0.0.1:$port${options:+$nl$options}
	}${globals:+$nl$globals}
}
http://127.0.0.1:$port {
	jwt_allauth {
		prefix /auth
	}${routes:+$nl$routes}
}
CADDY
}

# create_user EMAIL PASSWORD adds an account with the command line.
create_user() {
	printf '%s\n' "$2" | "$caddy" jwt-allauth create-user --config "$work/Caddyfile" \
		--email "$1" --password-stdin >/dev/null
}

# login_token EMAIL PASSWORD logs in on the Caddy start_caddy started and
# prints the access token; it stops the script when the login fails.
login_token() {
	local token
	token=$(curl -sf -H 'Content-Type: application/json' \
		-d "{\"email\":\"$1\",\"password\":\"$2\"}" \
		"http://127.0.0.1:$port/auth/login/" | sed -n 's/.*"access":"\([^"]*\)".*/\1/p')
	[ -n "$token" ] || { echo "login failed" >&2; cat "$work"/*.log >&2; exit 1; }
	echo "$token"
}

# start_caddy LOG PATH runs Caddy in the background, logging to LOG, and
# waits (10s at most) until PATH answers. It stops the script when
# something already answers on the port (a Caddy left from another run
# would be measured instead) or when Caddy exits.
start_caddy() {
	if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
		echo "something already answers on 127.0.0.1:$port" >&2
		exit 1
	fi
	"$caddy" run --config "$work/Caddyfile" >"$1" 2>&1 &
	caddy_pid=$!
	for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port$2" && break; sleep 0.2; done
	kill -0 "$caddy_pid" 2>/dev/null || { echo "caddy exited" >&2; cat "$1" >&2; caddy_pid=""; exit 1; }
}

# caddy_idle_memory prints the running Caddy's VmRSS once it has settled
# (two seconds after start_caddy, before any load), and how much of it is
# anonymous memory (the heap; the rest is mostly the binary's pages).
caddy_idle_memory() {
	sleep 2
	awk '/VmRSS/ {rss = $2 " " $3} /RssAnon/ {anon = $2 " " $3} END {print rss " (anonymous " anon ")"}' "/proc/$caddy_pid/status"
}

# caddy_peak_memory prints the running Caddy's VmHWM.
caddy_peak_memory() {
	awk '/VmHWM/ {print $2, $3}' "/proc/$caddy_pid/status"
}

# stop_caddy stops the Caddy start_caddy started.
stop_caddy() {
	kill "$caddy_pid"
	wait "$caddy_pid" 2>/dev/null || true
	caddy_pid=""
}

# wrk_rate CONNS DURATION PATH [HEADER] prints wrk's requests/s for GET
# PATH on 127.0.0.1:$port, with HEADER when it is given and not empty.
wrk_rate() {
	local conns=$1 duration=$2 path=$3 header=${4:-}
	local args=(-t2 -c"$conns" -d"$duration")
	if [ -n "$header" ]; then args+=(-H "$header"); fi
	wrk "${args[@]}" "http://127.0.0.1:$port$path" | awk '/Requests\/sec/ {print $2}'
}

# ratio_rounds LABEL ROUNDS CONNS DURATION BASE-PATH BASE-HEADER PATH HEADER
# measures PATH (with HEADER) against BASE-PATH (with BASE-HEADER; an
# empty header means none) in short alternating rounds, so that drift in
# the machine's load hits both sides alike: each round's rates and ratio,
# then one line "LABEL: median ratio R (means: base B req/s, P req/s)".
# The median of the per-round ratios is the figure.
ratio_rounds() {
	local label=$1 rounds=$2 conns=$3 duration=$4 bpath=$5 bheader=$6 gpath=$7 gheader=$8
	local ratios=() bsum=0 gsum=0 b g r i
	for i in $(seq 1 "$rounds"); do
		if [ $((i % 2)) -eq 1 ]; then
			b=$(wrk_rate "$conns" "$duration" "$bpath" "$bheader"); g=$(wrk_rate "$conns" "$duration" "$gpath" "$gheader")
		else
			g=$(wrk_rate "$conns" "$duration" "$gpath" "$gheader"); b=$(wrk_rate "$conns" "$duration" "$bpath" "$bheader")
		fi
		r=$(awk -v b="$b" -v g="$g" 'BEGIN {printf "%.3f", g/b}')
		ratios+=("$r")
		echo "  round $i: $bpath $b req/s, $gpath $g req/s, ratio $r"
		bsum=$(awk -v a="$bsum" -v b="$b" 'BEGIN {print a + b}')
		gsum=$(awk -v a="$gsum" -v b="$g" 'BEGIN {print a + b}')
	done
	local median
	median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.3f", (v[NR/2]+v[NR/2+1])/2}')
	awk -v l="$label" -v b="$bsum" -v g="$gsum" -v n="$rounds" -v m="$median" \
		'BEGIN {printf "%s: median ratio %s (means: base %.0f req/s, measured %.0f req/s)\n", l, m, b/n, g/n}'
}
