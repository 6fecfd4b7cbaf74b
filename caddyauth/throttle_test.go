package caddyauth

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

func TestThrottleCaddyfile(t *testing.T) {
	in := `jwt_allauth {
		throttle login_ip 100 1m
		throttle login_email off
		throttle mfa_verify_ip 5 30s
	}`
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	want := map[string]Throttle{
		"login_ip":      {Limit: 100, Window: caddy.Duration(time.Minute)},
		"login_email":   {},
		"mfa_verify_ip": {Limit: 5, Window: caddy.Duration(30 * time.Second)},
	}
	if len(a.Throttles) != len(want) {
		t.Fatalf("throttles %+v", a.Throttles)
	}
	for k, v := range want {
		if a.Throttles[k] != v {
			t.Fatalf("%s = %+v, want %+v", k, a.Throttles[k], v)
		}
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"throttle login_ip",
		"throttle login_ip 10",
		"throttle login_ip ten 1m",
		"throttle login_ip -1 1m",
		"throttle login_ip 10 0s",
		"throttle login_ip 10 soon",
		"throttle login 10 1m",
		"throttle login_ip 10 1m extra",
		"throttle login_ip 10 1m\nthrottle login_ip 20 1m",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n" + bad + "\n}")); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	a.Login(account.ResultSuccess)
	if n := testutil.ToFloat64(b.logins.WithLabelValues(account.ResultSuccess)); n != 1 {
		t.Fatalf("the second provisioning does not share the counter: %v", n)
	}
	var nilMetrics *metrics
	nilMetrics.Login(account.ResultSuccess) // must not panic
	nilMetrics.Unavailable(account.ErrHasherBusy)
}

func TestThrottleIPv6PrefixOption(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_allauth {\n\tthrottle_ipv6_prefix 48\n}")); err != nil {
		t.Fatal(err)
	}
	if a.ThrottleIPv6Prefix == nil || *a.ThrottleIPv6Prefix != 48 {
		t.Fatalf("throttle_ipv6_prefix %v", a.ThrottleIPv6Prefix)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{0, 129, -1} {
		a.ThrottleIPv6Prefix = &bad
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "throttle_ipv6_prefix") {
			t.Errorf("%d: %v", bad, err)
		}
	}
}
