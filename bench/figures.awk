# Reads the output of the bench scripts and prints "name<TAB>value" for
# each figure in it (bench/compare.sh and bench/all.sh use it):
#
#   awk -f bench/figures.awk OUTPUT
#
# A figure is named after the line it comes from, prefixed by the section
# ("== sqlite") it is in; latencies are in ms, memory in kB.
function ms(d) { # a duration as wrk or Go prints it, in ms
	sub(/,$/, "", d)
	if (d ~ /^[0-9.]+ns$/) return d / 1e6
	if (d ~ /^[0-9.]+(us|µs)$/) return d / 1e3
	if (d ~ /^[0-9.]+ms$/) return d + 0
	if (d ~ /^[0-9.]+s$/) return d * 1e3
	if (d ~ /^[0-9.]+m$/) return d * 6e4
	return ""
}
function put(name, v) { if (v != "") printf "%s\t%s\n", name, v }
/^== / { section = $2 " "; sub(/:$/, " ", section); next }
/: median ratio / { # bench/lib.sh ratio_rounds
	label = substr($0, 1, index($0, ": median ratio") - 1)
	rest = substr($0, index($0, ": median ratio") + 15)
	split(rest, f, " ")
	put(section label " ratio (median)", f[1]); next
}
/^logins: / { put("logins/s", $2); put("login p50 ms", ms($5)); put("login p99 ms", ms($7)); next }
/hashes\/s$/ { if ($(NF-1) > hashes) hashes = $(NF-1); next }
/^ratio logins\/s/ { put("ratio logins/s / hashes/s", $6); next }
/^caddy peak memory/ { put(section "peak memory kB", $5); next }
/^caddy idle memory/ { put(section "idle memory kB", $5); next }
# go test -bench: "BenchmarkName-2  N  X ns/op ...", where a log line
# written meanwhile may split the name from the numbers.
/^Benchmark[^ \t]*/ {
	bench = $1; sub(/-[0-9]+$/, "", bench)
	if (match($0, /[0-9.]+ ns\/op/)) { split(substr($0, RSTART), f, " "); put(bench " ns/op", f[1]); bench = "" }
	next
}
bench != "" && /^[ \t]+[0-9]+[ \t]+[0-9.]+ ns\/op/ { put(bench " ns/op", $2); bench = ""; next }
/^[a-z][a-z -]*: .*(req\/s|p50 )/ {
	label = section substr($0, 1, index($0, ":") - 1)
	who = /victim logins/ ? " victim" : ""
	for (i = 2; i <= NF; i++) {
		if ($i ~ /^req\/s[,;]?$/) put(label (who == "" ? "" : " flooders") " req/s", $(i-1))
		if ($i == "p50") put(label who " p50 ms", ms($(i+1)))
		if ($i == "p99") put(label who " p99 ms", ms($(i+1)))
	}
}
END { if (hashes != "") put("hashes/s (machine, best of the run)", hashes) }
