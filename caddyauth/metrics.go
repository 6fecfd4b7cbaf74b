package caddyauth

import (
	"context"
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/social"
)

// metrics are the realm's Prometheus metrics, registered in the registry of
// the config that provisioned the app, so they show on Caddy's `/metrics`
// (admin endpoint or `metrics` handler) next to Caddy's own. Caddy gives
// each config a registry of its own; the collectors themselves are shared
// by every config that runs the app (see acquireMetrics), so a reload
// keeps the counts:
//
//	caddy_jwt_allauth_logins_total{result}                  success, mfa_required, failure, locked, throttled, error
//	caddy_jwt_allauth_mfa_verifications_total{method,result} method totp|recovery_code|webauthn; result success|failure
//	caddy_jwt_allauth_lockouts_total{kind}                  kind mfa: a user reached the MFA failure limit; passkey: a counter regression locked a passkey
//	caddy_jwt_allauth_throttled_total{throttle}             requests refused by a throttle (login_ip, ...)
//	caddy_jwt_allauth_store_errors_total                    requests answered 503 because the store failed
//	caddy_jwt_allauth_provider_errors_total                 requests answered 503 because an identity provider could not be reached
//	caddy_jwt_allauth_hash_queue_rejections_total           requests answered 503 because no hashing slot freed up
//	caddy_jwt_allauth_hash_queue_wait_seconds               time spent waiting for a hashing slot
//	caddy_jwt_allauth_limiter_fallbacks_total               (redis limiter) checks decided in memory
//	caddy_jwt_allauth_mails_sent_total{kind}                mails handed to the transport, by template name
//	caddy_jwt_allauth_mails_not_sent_total{kind,reason}     reason queue_full, kind_limit, recipient_limit, send_failed, shutdown, render_failed
//	caddy_jwt_allauth_social_logins_total{provider,result}  sign-ins with a provider; results as for logins
//	caddy_jwt_allauth_social_links_total{provider,action}   action signup, link (by e-mail), connect, unlink
//
// Every method is safe on a nil *metrics, which counts nothing.
type metrics struct {
	logins         *prometheus.CounterVec
	mfa            *prometheus.CounterVec
	lockouts       *prometheus.CounterVec
	throttled      *prometheus.CounterVec
	storeErrors    prometheus.Counter
	providerErrors prometheus.Counter
	hashRejections prometheus.Counter
	hashQueueWait  prometheus.Histogram
	mailsSent      *prometheus.CounterVec
	mailsNotSent   *prometheus.CounterVec
	socialLogins   *prometheus.CounterVec
	socialLinks    *prometheus.CounterVec
}

// newMetrics registers the metrics in reg. A collector that a previous
// provisioning already registered in reg is reused, so provisioning twice
// against one registry does not fail.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "caddy", "jwt_allauth"
	var err error
	m := new(metrics)
	m.logins, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "logins_total",
		Help: "Login requests by result.",
	}, []string{"result"}))
	if err != nil {
		return nil, err
	}
	m.mfa, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "mfa_verifications_total",
		Help: "Second-factor checks (codes and passkeys) by method and result.",
	}, []string{"method", "result"}))
	if err != nil {
		return nil, err
	}
	m.lockouts, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "lockouts_total",
		Help: "Lockouts by kind: users who reached the MFA failure limit (mfa), passkeys locked by a counter regression (passkey).",
	}, []string{"kind"}))
	if err != nil {
		return nil, err
	}
	m.throttled, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "throttled_total",
		Help: "Requests refused with 429 by a throttle, by throttle name.",
	}, []string{"throttle"}))
	if err != nil {
		return nil, err
	}
	m.storeErrors, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "store_errors_total",
		Help: "Requests answered 503 because the store failed.",
	}))
	if err != nil {
		return nil, err
	}
	m.providerErrors, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "provider_errors_total",
		Help: "Requests answered 503 because an identity provider could not be reached or answered nonsense.",
	}))
	if err != nil {
		return nil, err
	}
	m.hashRejections, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "hash_queue_rejections_total",
		Help: "Requests answered 503 because no password hashing slot became free in time.",
	}))
	if err != nil {
		return nil, err
	}
	m.hashQueueWait, err = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "hash_queue_wait_seconds",
		Help:    "Time a password hash or verification waited for a hashing slot.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2},
	}))
	if err != nil {
		return nil, err
	}
	m.mailsSent, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "mails_sent_total",
		Help: "Mails handed to the mail transport, by kind (template name).",
	}, []string{"kind"}))
	if err != nil {
		return nil, err
	}
	m.mailsNotSent, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "mails_not_sent_total",
		Help: "Mails that were not sent, by kind (template name) and reason.",
	}, []string{"kind", "reason"}))
	if err != nil {
		return nil, err
	}
	m.socialLogins, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "social_logins_total",
		Help: "Sign-ins with an identity provider, by provider and result.",
	}, []string{"provider", "result"}))
	if err != nil {
		return nil, err
	}
	m.socialLinks, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "social_links_total",
		Help: "Links between accounts and identity providers made or removed, by provider and action.",
	}, []string{"provider", "action"}))
	if err != nil {
		return nil, err
	}
	for _, r := range []string{account.ResultSuccess, account.ResultMFARequired, account.ResultFailure, account.ResultLocked, account.ResultThrottled, account.ResultError} {
		m.logins.WithLabelValues(r)
	}
	for _, method := range []string{account.MethodTOTP, account.MethodRecoveryCode, account.MethodPasskey} {
		for _, r := range []string{account.ResultSuccess, account.ResultFailure} {
			m.mfa.WithLabelValues(method, r)
		}
	}
	m.lockouts.WithLabelValues("mfa")
	m.lockouts.WithLabelValues("passkey")
	return m, nil
}

// sharedMetrics holds the one set of collectors, under metricsKey, while
// any provisioned app counts in it: a reload provisions the new app before
// the old one lets go, so the counts carry over, and only an app started
// after every other one stopped starts from zero.
var sharedMetrics = caddy.NewUsagePool()

const metricsKey = "metrics"

// acquireMetrics returns the shared collectors, registered in reg, and
// takes a reference that releaseMetrics gives back.
func acquireMetrics(reg prometheus.Registerer) (*metrics, error) {
	val, _, err := sharedMetrics.LoadOrNew(metricsKey, func() (caddy.Destructor, error) { return newMetrics(nil) })
	if err != nil {
		return nil, err
	}
	m := val.(*metrics)
	if err := m.registerIn(reg); err != nil {
		_, _ = sharedMetrics.Delete(metricsKey)
		return nil, err
	}
	return m, nil
}

// releaseMetrics gives back the reference of an acquireMetrics, if *held,
// and clears it, so that releasing twice releases nothing.
func releaseMetrics(held **metrics) error {
	if *held == nil {
		return nil
	}
	*held = nil
	_, err := sharedMetrics.Delete(metricsKey)
	return err
}

// Destruct lets the collectors go with the last app that used them.
func (m *metrics) Destruct() error { return nil }

// registerIn adds m's own collectors to reg.
func (m *metrics) registerIn(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.logins, m.mfa, m.lockouts, m.throttled, m.storeErrors, m.providerErrors, m.hashRejections, m.hashQueueWait, m.mailsSent, m.mailsNotSent, m.socialLogins, m.socialLinks} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) || are.ExistingCollector != c {
				return fmt.Errorf("registering metric: %v", err)
			}
		}
	}
	return nil
}

// register adds c to reg, or returns the equal collector reg already has.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, fmt.Errorf("registering metric: %v", err)
	}
	return c, nil
}

func (m *metrics) Login(result string) {
	if m != nil {
		m.logins.WithLabelValues(result).Inc()
	}
}

func (m *metrics) MFAVerification(method, result string) {
	if m != nil {
		m.mfa.WithLabelValues(method, result).Inc()
	}
}

func (m *metrics) Lockout(kind string) {
	if m != nil {
		m.lockouts.WithLabelValues(kind).Inc()
	}
}

func (m *metrics) Throttle(name string) {
	if m != nil {
		m.throttled.WithLabelValues(name).Inc()
	}
}

// unavailable counts a request answered 503 by its cause. A request whose
// client went away is not a store failure.
func (m *metrics) Unavailable(err error) {
	if m == nil || errors.Is(err, context.Canceled) {
		return
	}
	switch {
	case errors.Is(err, account.ErrHasherBusy):
		m.hashRejections.Inc()
	case errors.Is(err, social.ErrUnavailable):
		m.providerErrors.Inc()
	default:
		m.storeErrors.Inc()
	}
}

// hashWait records a wait for a hashing slot, in seconds.
func (m *metrics) hashWait(seconds float64) {
	if m != nil {
		m.hashQueueWait.Observe(seconds)
	}
}

func (m *metrics) mailSent(kind string) {
	if m != nil {
		m.mailsSent.WithLabelValues(kind).Inc()
	}
}

func (m *metrics) mailNotSent(kind, reason string) {
	if m != nil {
		m.mailsNotSent.WithLabelValues(kind, reason).Inc()
	}
}

func (m *metrics) SocialLogin(provider, result string) {
	if m != nil {
		m.socialLogins.WithLabelValues(provider, result).Inc()
	}
}

func (m *metrics) SocialLink(provider, action string) {
	if m != nil {
		m.socialLinks.WithLabelValues(provider, action).Inc()
	}
}
