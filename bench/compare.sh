#!/usr/bin/env bash
# Measures a revision against the working tree with one bench script, in
# one run, so that figures from before and after a change come from the
# same machine under the same load:
#
#   bash bench/compare.sh <base-rev> <script> [script args...]
#   bash bench/compare.sh HEAD~1 bench/guard.sh 1s 8 1
#
# It builds Caddy with the plugin (./cmd/caddy) from <base-rev>, in a
# temporary detached git worktree that is removed once built, and from the
# working tree as it is (uncommitted and untracked files included: that is
# "head"). It builds the load generator (./bench/load) once, from the
# working tree, for both sides: it is the measuring client, not what is
# compared, so both sides get the same one. Then it runs the working
# tree's <script> with the script args for each side in turn, handing it
# the binaries through JWT_ALLAUTH_BENCH_CADDY and JWT_ALLAUTH_BENCH_LOAD
# (bench/lib.sh); only the Caddy binary differs between the sides. The
# script must therefore accept the base's Caddy (the Caddyfile options and
# the create-user command it uses).
#
# Each run's output is printed as it comes, every line labelled
# "base N |" or "head N |". Round N runs base then head when N is odd,
# head then base when N is even, so that a drift in the machine's load
# hits both sides alike. At the end, a summary: for each figure found in
# the outputs (the lines that bench/guard.sh, bench/login.sh,
# bench/flows.sh and bench/password_flood.sh end with; latencies in ms,
# memory in kB), every run's value per side, the median per side and
# head/base of the medians. When no figure is recognised, the outputs are
# printed again, grouped by side.
#
#   JWT_ALLAUTH_COMPARE_ROUNDS   runs per side (default 2)
#   JWT_ALLAUTH_COMPARE_TIMEOUT  longest one run may take, as for
#                                timeout(1) (default 15m); a run killed
#                                then, or failing, stops the comparison
#
# The scripts target loopback only and stop by themselves; on exit, or on
# INT or TERM, this one stops the run in progress (its Caddy included),
# removes the worktree and its temporary directory.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: bash bench/compare.sh <base-rev> <script> [script args...]" >&2
	exit 2
fi
rev=$1
script=$(realpath -e "$2")
shift 2
rounds=${JWT_ALLAUTH_COMPARE_ROUNDS:-2}
limit=${JWT_ALLAUTH_COMPARE_TIMEOUT:-15m}
case $rounds in '' | *[!0-9]* | 0)
	echo "JWT_ALLAUTH_COMPARE_ROUNDS must be a positive integer" >&2
	exit 2
	;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base_sha=$(git rev-parse --verify --quiet "$rev^{commit}") || { echo "unknown revision: $rev" >&2; exit 2; }
head_sha=$(git rev-parse HEAD)
head_desc="working tree at ${head_sha:0:12}"
if [ -n "$(git status --porcelain)" ]; then head_desc+=" with uncommitted changes"; fi

tmp=$(mktemp -d)
run_pid=""
show_pid=""
compare_cleanup() {
	if [ -n "$run_pid" ]; then kill "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; fi
	if [ -n "$show_pid" ]; then wait "$show_pid" 2>/dev/null || true; fi
	if [ -d "$tmp/base" ]; then git worktree remove --force "$tmp/base" || true; fi
	rm -rf "$tmp"
}
trap compare_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "base: $rev (${base_sha:0:12}); head: $head_desc"
echo "building base Caddy (./cmd/caddy at ${base_sha:0:12})..."
git worktree add --quiet --detach "$tmp/base" "$base_sha"
(cd "$tmp/base" && go build -o "$tmp/caddy-base" ./cmd/caddy)
git worktree remove --force "$tmp/base"
echo "building head Caddy (./cmd/caddy in the working tree) and the load generator (./bench/load)..."
go build -o "$tmp/caddy-head" ./cmd/caddy
go build -o "$tmp/load" ./bench/load

# run SIDE N ARGS... runs the script with SIDE's Caddy and ARGS, output
# to $tmp/SIDE-N.out and, labelled, to stdout.
run() {
	local side=$1 n=$2 out="$tmp/$1-$2.out" rc=0
	shift 2
	echo "== $side $n: $(date +%T), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	: >"$out"
	JWT_ALLAUTH_BENCH_CADDY="$tmp/caddy-$side" JWT_ALLAUTH_BENCH_LOAD="$tmp/load" \
		timeout -k 10s "$limit" bash "$script" "$@" >"$out" 2>&1 </dev/null &
	run_pid=$!
	tail -n +1 -f --pid="$run_pid" "$out" | sed -u "s/^/$side $n | /" &
	show_pid=$!
	wait "$run_pid" || rc=$?
	run_pid=""
	wait "$show_pid" || true
	show_pid=""
	if [ "$rc" -ne 0 ]; then
		echo "$side $n: the script failed (exit $rc; 124: killed after $limit)" >&2
		exit 1
	fi
}

for n in $(seq 1 "$rounds"); do
	if [ $((n % 2)) -eq 1 ]; then
		run base "$n" "$@"
		run head "$n" "$@"
	else
		run head "$n" "$@"
		run base "$n" "$@"
	fi
done

# figures FILE prints "name<TAB>value" for each figure in a script's
# output (bench/figures.awk).
figures() { awk -f bench/figures.awk "$1"; }

for side in base head; do
	for n in $(seq 1 "$rounds"); do figures "$tmp/$side-$n.out" | sed "s/^/$side\t/" >>"$tmp/figures"; done
done
echo
echo "== summary: base $rev (${base_sha:0:12}), head $head_desc; $rounds run(s) each of $(basename "$script")${*:+ $*}"
if [ ! -s "$tmp/figures" ]; then
	echo "no figure recognised in the outputs; here they are by side:"
	for side in base head; do
		for n in $(seq 1 "$rounds"); do sed "s/^/$side $n | /" "$tmp/$side-$n.out"; done
	done
	exit 0
fi
# Lines of $tmp/figures: side, name, value, in run order per side.
awk -F '\t' '
function median(list, a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
!($2 in seen) { seen[$2] = 1; order[++names] = $2 }
{ vals[$1, $2] = vals[$1, $2] (vals[$1, $2] == "" ? "" : " ") $3 }
END {
	printf "%-40s %-28s %-28s %s\n", "figure", "base: runs (median)", "head: runs (median)", "head/base"
	for (k = 1; k <= names; k++) {
		name = order[k]; b = vals["base", name]; h = vals["head", name]
		mb = b == "" ? "" : median(b); mh = h == "" ? "" : median(h)
		printf "%-40s %-28s %-28s %s\n", name, b " (" mb ")", h " (" mh ")", (mb != "" && mh != "" && mb + 0 != 0) ? sprintf("%.3f", mh / mb) : "-"
	}
}' "$tmp/figures"
