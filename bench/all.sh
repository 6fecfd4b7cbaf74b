#!/usr/bin/env bash
# Runs the benchmarks of the repository's targets, one after the other,
# and prints one table of their figures, each beside its target and
# whether it is met: the table README's performance section shows.
# bench/password_flood.sh (another user's logins during a flood) has no
# target and runs on its own.
#
#   bash bench/all.sh [quick]
#
# In order: the Go benchmarks of a refused MFA check (with and without
# 100,000 earlier failures) and of the guard's cached path; bench/guard.sh
# with Ed25519 and with HS256 tokens; bench/peers.sh (builds Caddy with
# caddy-security, minutes the first time; JWT_ALLAUTH_BENCH_PEER_CACHE
# keeps the binary, default here: bench/.peer-cache, which git ignores);
# bench/flows.sh on SQLite and PostgreSQL; bench/login.sh. About 25
# minutes with the defaults. `quick` runs each for a fraction of that,
# to try the script: its figures are not for quoting.
#
# Every script's output is printed as it comes and kept, in the directory
# JWT_ALLAUTH_BENCH_OUT when it is set (else a temporary one, removed at the
# end), one file per step; a step whose file is there already is not run
# again, so a run that stopped, or a step measured again after removing its
# file, ends with the whole table. A script that fails stops the run (its
# file is removed). The machine has to be otherwise idle: every figure
# is a rate, and other load lowers it (check with uptime before and after;
# bench/login.sh prints the load average).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
quick=${1:-}
if [ -n "$quick" ] && [ "$quick" != quick ]; then
	echo "usage: bash bench/all.sh [quick]" >&2
	exit 2
fi
if [ -n "${JWT_ALLAUTH_BENCH_OUT:-}" ]; then
	out=$JWT_ALLAUTH_BENCH_OUT
	mkdir -p "$out"
else
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
export JWT_ALLAUTH_BENCH_PEER_CACHE=${JWT_ALLAUTH_BENCH_PEER_CACHE:-bench/.peer-cache}

if [ -n "$quick" ]; then
	gobench=(-benchtime 300x -count 1) guardbench=(-benchtime 2000x -count 1) wrk_args=(1s 32 2) flows_args=(2s 32 50) login_args=(3s 32)
else
	gobench=(-benchtime 3000x -count 5) guardbench=(-benchtime 20000x -count 5) wrk_args=(5s 32 8) flows_args=(10s 32 1000) login_args=(10s 32)
fi

# step NAME COMMAND... runs COMMAND, printing and keeping its output under
# the section "== NAME" (a script's own sections take over inside it).
steps=()
step() {
	local name=$1
	shift
	steps+=("$out/$name.out")
	if [ -s "$out/$name.out" ]; then
		echo "### $name: kept from an earlier run ($out/$name.out)"
		return
	fi
	echo "### $name: $*"
	# Only the standard output is kept (and read for figures): a Go
	# benchmark's log lines on the standard error would split its result
	# lines.
	if ! { echo "== $name" && "$@"; } | tee "$out/$name.out"; then
		echo "bench/all.sh: $name failed" >&2
		rm -f "$out/$name.out"
		exit 1
	fi
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
step mfa-check go test -run '^$' -bench '^BenchmarkRefusedVerify$' "${gobench[@]}" ./caddyauth/account/
step guard-go go test -run '^$' -bench '^BenchmarkGuard$' "${guardbench[@]}" ./caddyauth/
step EdDSA bash bench/guard.sh "${wrk_args[@]}" EdDSA
step HS256 bash bench/guard.sh "${wrk_args[@]}" HS256
step peers bash bench/peers.sh "${wrk_args[@]}"
step flows bash bench/flows.sh "${flows_args[@]}"
step login bash bench/login.sh "${login_args[@]}"

# The table: each figure's median over its values (the Go benchmarks run
# several times), and its target where the project has one.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision with uncommitted changes"; fi
cat "${steps[@]}" | awk -f bench/figures.awk | awk -F '\t' -v started="$started" -v revision="$revision" -v machine="$(nproc) CPUs, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/^Mem/ {print $2}') GiB" '
function median(list, a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
BEGIN {
	target["sqlite mfa-wrong req/s"] = ">= 1000"; target["postgres mfa-wrong req/s"] = ">= 1000"
	target["sqlite mfa-wrong p99 ms"] = "<= 100"; target["postgres mfa-wrong p99 ms"] = "<= 100"
	target["sqlite mfa-right req/s"] = ">= 1000"; target["postgres mfa-right req/s"] = ">= 1000"
	target["sqlite refresh req/s"] = ">= 3500"; target["postgres refresh req/s"] = ">= 2000"
	target["EdDSA guard, same request ratio (median)"] = ">= 0.97"
	target["HS256 guard, same request ratio (median)"] = ">= 0.97"
	target["EdDSA guard, plain route without header ratio (median)"] = ">= 0.93"
	target["HS256 guard, plain route without header ratio (median)"] = ">= 0.93"
	target["sqlite peak memory kB"] = "<= 204800"; target["postgres peak memory kB"] = "<= 204800"
	target["ratio logins/s / hashes/s"] = ">= 0.9"
	target["BenchmarkRefusedVerify/history=100000 ns/op"] = "flat: <= 1.1 x history=0"
}
# met says whether value v meets the target t of figure f: yes, no, or
# nothing for a figure without one.
function met(f, v, t, parts, base) {
	if (t == "") return ""
	if (t ~ /^flat/) {
		base = median(vals["BenchmarkRefusedVerify/history=0 ns/op"])
		return (base > 0 && v <= 1.1 * base) ? "yes" : "no"
	}
	split(t, parts, " ")
	if (parts[1] == ">=") return (v >= parts[2] + 0) ? "yes" : "no"
	return (v <= parts[2] + 0) ? "yes" : "no"
}
!($1 in seen) { seen[$1] = 1; order[++n] = $1 }
{ vals[$1] = vals[$1] (vals[$1] == "" ? "" : " ") $2 }
END {
	printf "Measured %s on %s, revision %s (`bash bench/all.sh`).\n\n", started, machine, revision
	printf "| figure | value | target | met |\n|---|---|---|---|\n"
	for (k = 1; k <= n; k++) {
		f = order[k]
		v = median(vals[f])
		shown = (v == int(v)) ? sprintf("%d", v) : sprintf("%.3g", v)
		if (v >= 1000) shown = sprintf("%.0f", v)
		t = (f in target) ? target[f] : ""
		printf "| %s | %s | %s | %s |\n", f, shown, t, met(f, v, t)
	}
}'
