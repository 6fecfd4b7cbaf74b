#!/usr/bin/env bash
# Measures login throughput against what the machine can hash: logins/s
# and p50/p99 latency of POST /auth/login/ under concurrent clients (wrk,
# loopback, throttles off), the machine's argon2id hash rate measured in
# the same run (logins/s can at best equal hashes/s: one hash per login),
# their ratio (target >= 0.9), and the peak memory of the caddy process.
#
#   bash bench/login.sh [duration=10s] [connections=32]
duration=${1:-10s}
conns=${2:-32}
port=18482
password='Quartz-Lantern-8812'
. "$(dirname "$0")/lib.sh"
need_wrk

echo "machine: $(nproc) CPUs, $(go env GOARCH), load average $(cut -d' ' -f1-3 /proc/loadavg) (other load skews every figure)"
build_load
echo "argon2id hash rate (the module's parameters: 19 MiB, t=2, p=1)..."
single_ns=$(go test -run '^$' -bench '^BenchmarkArgon2idHash$' -benchtime 3s ./caddyauth/passwords/ | awk '/^BenchmarkArgon2idHash/ {print $3}')
parallel=$("$load" -mode hashrate -c "$(nproc)" -d 5s | awk '{print $2}')
awk -v ns="$single_ns" -v n="$(nproc)" -v p="$parallel" 'BEGIN {
	printf "  one goroutine: %.1f ms/hash (%.1f hashes/s); %d goroutines: %.1f hashes/s\n", ns/1e6, 1e9/ns, n, p }'

build_caddy

# The login throttles are per client address and per e-mail; one client
# logging one user in thousands of times would hit both at once.
write_caddyfile "store sqlite $work/bench.db" "		throttle login_ip off
		throttle login_email off"
create_user bench@example.com "$password"
start_caddy "$work/caddy.log" /auth/login/

body="{\"email\":\"bench@example.com\",\"password\":\"$password\"}"
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/auth/login/")" = 200 ] \
	|| { echo "login failed" >&2; cat "$work/caddy.log"; exit 1; }
cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

echo "wrk: $conns connections, $duration, POST /auth/login/ (correct password)..."
wrk -t2 -c"$conns" -d"$duration" --latency -s "$work/login.lua" "http://127.0.0.1:$port/auth/login/" >"$work/wrk.out"
rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
hwm=$(caddy_peak_memory)
stop_caddy
# Measured again with the server stopped; the higher rate is the ceiling
# (other load on the machine only lowers it).
again=$("$load" -mode hashrate -c "$(nproc)" -d 5s | awk '{print $2}')
echo "argon2id hash rate again after the run: $again hashes/s"
parallel=$(awk -v a="$parallel" -v b="$again" 'BEGIN {print (a > b ? a : b)}')
echo "logins: $rps req/s, p50 $p50, p99 $p99, non-2xx ${non2xx:-0}"
echo "caddy peak memory (VmHWM): $hwm"
awk -v r="$rps" -v p="$parallel" 'BEGIN {
	printf "ratio logins/s / hashes/s = %.2f (target >= 0.9)\n", r/p }'
