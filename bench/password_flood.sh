#!/usr/bin/env bash
# Measures what a flood of password checks from one source does to other
# users' logins: one client (127.0.0.2) with one stolen access token sends
# wrong old passwords to POST /auth/password/change/ on many connections,
# while another client (127.0.0.3) logs another user in, one login after
# another; the victim's p50/p99 are printed alone and under the flood
# (bench/load -mode password-flood), with both sides' statuses. The
# password-check and login throttles are off, so that every flooding
# request reaches the hasher: what is measured is the hasher's fair share
# (caddyauth/account/hasher.go), not the throttles, which would stop this flood
# after 20 requests a minute. Loopback only, bounded.
#
#   bash bench/password_flood.sh [duration=10s] [flood-connections=64] [victims=2]
duration=${1:-10s}
conns=${2:-64}
victims=${3:-2}
port=18484
password='Quartz-Lantern-8812'
. "$(dirname "$0")/lib.sh"

echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) (other load skews every figure)"
build_caddy
build_load

write_caddyfile "store sqlite $work/bench.db" "		throttle login_ip off
		throttle login_email off
		throttle password_check_ip off
		throttle password_check_user off"
create_user flooder@example.com "$password"
create_user victim@example.com "$password"
start_caddy "$work/caddy.log" /auth/login/

echo "victim: $victims clients logging in; flood: $conns connections of wrong password changes, $duration each phase..."
"$load" -mode password-flood -base "http://127.0.0.1:$port/auth" \
	-email flooder@example.com -password "$password" \
	-victim-email victim@example.com -victim-password "$password" \
	-victims "$victims" -c "$conns" -d "$duration"
echo "caddy peak memory (VmHWM): $(caddy_peak_memory)"
stop_caddy
