package caddyauth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// Social login end to end: a real Caddy from a Caddyfile whose provider
// is a real OpenID Connect server on loopback (mockoidc), which the
// realm discovers and whose published keys it fetches. ID tokens come
// from the provider's token endpoint after its authorize leg, or are
// signed with the provider's own key for the claims a test needs;
// forgeries are signed with anything else.

// socialCallback is the redirect URI the test app registered at the
// provider and on social_callback_urls.
const socialCallback = "https://app.example.com/social/callback/"

// idp is the identity provider of a test.
type idp struct {
	t *testing.T
	m *mockoidc.MockOIDC
}

func startIdP(t *testing.T) *idp {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return &idp{t: t, m: m}
}

// options is the jwt_allauth option body declaring the provider as
// `company` (block: more lines of its block), the callback allow-list,
// and extra global lines.
func (p *idp) options(block string, extra ...string) string {
	social := fmt.Sprintf("social company oidc %s {\n\t\t\tclient_id %s\n\t\t\tclient_secret %s\n\t\t\t%s\n\t\t}\n\t\tsocial_callback_urls %s",
		p.m.Issuer(), p.m.ClientID, p.m.ClientSecret, block, socialCallback)
	return strings.Join(append([]string{social}, extra...), "\n\t\t")
}

// claims are the ID token claims the provider gives sub, for its client.
func (p *idp) claims(sub, email string, verified bool) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": p.m.Issuer(), "aud": p.m.ClientID, "sub": sub,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "name": "Ada Lovelace"}
	if email != "" {
		c["email"] = email
		c["email_verified"] = verified
	}
	return c
}

// signed is an ID token of the provider (its published key) with claims.
func (p *idp) signed(c jwt.MapClaims) string {
	p.t.Helper()
	tok, err := p.m.Keypair.SignJWT(c)
	if err != nil {
		p.t.Fatal(err)
	}
	return tok
}

// idToken is the provider's ID token for sub with a verified address.
func (p *idp) idToken(sub, email string) string {
	p.t.Helper()
	return p.signed(p.claims(sub, email, true))
}

// pkce is a PKCE verifier and its S256 challenge.
func pkce(t *testing.T) (verifier, challenge string) {
	t.Helper()
	verifier = randomHex(t, 32)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// code runs the app's browser leg at the provider: the authorization
// request for user (redirecting to callback, with the PKCE challenge),
// and returns the code from the provider's redirect.
func (p *idp) code(user *mockoidc.MockUser, callback, challenge string) string {
	p.t.Helper()
	t := p.t
	p.m.QueueUser(user)
	state := randomHex(t, 8)
	q := url.Values{"client_id": {p.m.ClientID}, "response_type": {"code"}, "scope": {"openid email profile"},
		"redirect_uri": {callback}, "state": {state}, "nonce": {randomHex(t, 8)}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noFollow.Get(p.m.AuthorizationEndpoint() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc, err := url.Parse(res.Header.Get("Location"))
	if res.StatusCode != http.StatusFound || err != nil || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// issued is the ID token the provider's token endpoint gives the app for
// user after a real code flow, as a mobile app would send it.
func (p *idp) issued(user *mockoidc.MockUser) string {
	p.t.Helper()
	t := p.t
	verifier, challenge := pkce(t)
	code := p.code(user, socialCallback, challenge)
	res, err := http.PostForm(p.m.TokenEndpoint(), url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {socialCallback}, "client_id": {p.m.ClientID}, "client_secret": {p.m.ClientSecret}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.IDToken == "" {
		t.Fatalf("token endpoint: %d %v", res.StatusCode, err)
	}
	return body.IDToken
}

// socialToken posts an ID token to the token flow of provider company.
func (s *site) socialToken(p *idp, idToken string) reply {
	s.t.Helper()
	return s.post("/auth/social/company/token/", map[string]string{"id_token": idToken, "client_id": p.m.ClientID})
}

// refusal fails unless r is status with the body {"detail", "code"} of
// this code.
func (r reply) refusal(t *testing.T, status int, code string) reply {
	t.Helper()
	r.expect(t, status).noSession(t)
	if got := r.str("code"); got != code || r.str("detail") == "" || len(r.body) != 2 {
		t.Fatalf("code %q, want %q alone with a detail; body: %s", got, code, r.raw)
	}
	return r
}

// inactive fails unless r is the login's refusal of an inactive
// account: its words, and no code.
func (r reply) inactive(t *testing.T) {
	t.Helper()
	r.detail(t, 401, account.MsgNoActiveAccount).noSession(t)
	if _, ok := r.body["code"]; ok {
		t.Fatalf("the inactive account's refusal has a code: %s", r.raw)
	}
}

// links are the user's social links as the store holds them.
func links(t *testing.T, userID int64) []account.SocialAccount {
	t.Helper()
	l, err := activeStore(t).SocialAccounts(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// userCount counts the rows of users.
func userCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := storeDB(t).QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// linkList is GET social/accounts/ for the bearer of access.
func (s *site) linkList(access string) []map[string]any {
	s.t.Helper()
	r := s.get("/auth/social/accounts/", bearer(access)).expect(s.t, 200)
	if r.list == nil && strings.TrimSpace(string(r.raw)) != "[]" {
		s.t.Fatalf("accounts: %s", r.raw)
	}
	out := make([]map[string]any, 0, len(r.list))
	for _, v := range r.list {
		out = append(out, linkShape(s.t, v))
	}
	return out
}

// linkShape checks a link as the reference shows it: exactly id,
// provider, uid, last_login (null or a time) and date_joined.
func linkShape(t *testing.T, v any) map[string]any {
	t.Helper()
	l, ok := v.(map[string]any)
	if !ok || !slices.Equal(keys(l), []string{"date_joined", "id", "last_login", "provider", "uid"}) {
		t.Fatalf("link %v: want exactly id, provider, uid, last_login, date_joined", v)
	}
	if _, ok := l["id"].(float64); !ok {
		t.Fatalf("link id %v", l["id"])
	}
	for _, k := range []string{"date_joined", "last_login"} {
		s, isStr := l[k].(string)
		if k == "last_login" && l[k] == nil {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, s); !isStr || err != nil {
			t.Fatalf("link %s %v", k, l[k])
		}
	}
	return l
}

func linkID(l map[string]any) int64 { return int64(l["id"].(float64)) }

// Every row of the reference's social tests, on the token flow.
func TestSocialTokenFlowE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		ctx := context.Background()
		st := activeStore(t)

		// A first sign-in, with the ID token the provider's token
		// endpoint issued, creates a password-less account whose address
		// is verified, and opens a session like a login.
		tok := p.issued(&mockoidc.MockUser{Subject: "sub-ada", Email: "Ada@Example.com", EmailVerified: true})
		access, refresh := s.socialToken(p, tok).session(t, false)
		u, err := st.UserByEmail(ctx, "ada@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if u.PasswordHash != "" || !u.EmailVerified || !u.IsActive {
			t.Fatalf("the new account: password %q, verified %v, active %v", u.PasswordHash, u.EmailVerified, u.IsActive)
		}
		if c := claims(t, access); c["email_verified"] != true || c["user_id"] != fmt.Sprint(u.ID) {
			t.Fatalf("access claims %v for user %d", c, u.ID)
		}
		if r := s.get("/auth/user/", bearer(access)).expect(t, 200); r.str("email") != "ada@example.com" {
			t.Fatalf("/user/: %s", r.raw)
		}
		r := s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		if r.str("access") == "" {
			t.Fatalf("refresh: %s", r.raw)
		}
		l := links(t, u.ID)
		if len(l) != 1 || l[0].Provider != "company" || l[0].UID != "sub-ada" {
			t.Fatalf("links %+v", l)
		}
		// The account has no password: none signs in to it.
		s.post("/auth/login/", map[string]string{"email": "ada@example.com", "password": userPass}).expect(t, 401)

		// The second sign-in reaches the same account, by the subject,
		// though the provider now gives another address.
		n := userCount(t)
		access2, _ := s.socialToken(p, p.idToken("sub-ada", "ada.new@example.com")).session(t, false)
		if got := claims(t, access2)["user_id"]; fmt.Sprint(got) != fmt.Sprint(u.ID) {
			t.Fatalf("second sign-in as user %v, want %d", got, u.ID)
		}
		if userCount(t) != n {
			t.Fatal("the second sign-in created an account")
		}
		if l := links(t, u.ID); len(l) != 1 || l[0].LastLogin.IsZero() {
			t.Fatalf("links after the second sign-in %+v", l)
		}

		good := p.idToken("sub-x", "x@example.com")
		s.post("/auth/social/nope/token/", map[string]string{"id_token": good, "client_id": p.m.ClientID}).refusal(t, 404, "provider_not_configured")
		s.post("/auth/social/company/token/", map[string]string{"access_token": "an-access-token", "client_id": p.m.ClientID}).refusal(t, 400, "flow_not_supported")
		s.post("/auth/social/company/token/", map[string]string{"id_token": good, "client_id": "someone-else"}).refusal(t, 401, "client_id_mismatch")
		s.post("/auth/social/company/token/", map[string]string{"id_token": good}).refusal(t, 401, "client_id_mismatch")
		r = s.post("/auth/social/company/token/", map[string]string{"client_id": p.m.ClientID}).expect(t, 400).noSession(t)
		if r.fieldMsg("non_field_errors") == "" {
			t.Fatalf("a body without credential: %s", r.raw)
		}
		s.post("/auth/social/company/token/", map[string]string{"id_token": good[:len(good)-4] + "AAAA", "client_id": p.m.ClientID}).refusal(t, 401, "invalid_social_token")
		s.post("/auth/social/company/token/", map[string]string{"id_token": "not.a.jwt", "client_id": p.m.ClientID}).refusal(t, 401, "invalid_social_token")
		s.socialToken(p, p.signed(p.claims("sub-x", "x@example.com", false))).refusal(t, 400, "provider_email_unverified")
		// The provider's own answer for an address it does not vouch for
		// leaves email_verified out.
		s.socialToken(p, p.issued(&mockoidc.MockUser{Subject: "sub-x", Email: "x@example.com"})).refusal(t, 400, "provider_email_unverified")
		s.socialToken(p, p.signed(p.claims("sub-x", "", false))).refusal(t, 400, "provider_email_unverified")
		s.socialToken(p, p.signed(p.claims("sub-x", "not-an-address", true))).refusal(t, 400, "provider_email_unverified")
		if userCount(t) != n {
			t.Fatal("a refused sign-in created an account")
		}

		// An inactive account is refused in the login's words, whether
		// reached by its link or by its address.
		if err := st.SetActive(ctx, u.ID, false); err != nil {
			t.Fatal(err)
		}
		s.socialToken(p, p.idToken("sub-ada", "ada@example.com")).inactive(t)
		local := mustCreateUser(t, "grace@example.com", userPass, 0)
		if err := st.SetActive(ctx, local.ID, false); err != nil {
			t.Fatal(err)
		}
		s.socialToken(p, p.idToken("sub-grace", "grace@example.com")).inactive(t)
		if l := links(t, local.ID); len(l) != 0 {
			t.Fatalf("an inactive account was linked: %+v", l)
		}
	})
}

// Sign-up through a provider follows `signup` and `registration`, and
// reaching an existing account by its address follows `link_by_email`
// and the proof of its mailbox; an existing account is still reached
// when sign-up is off.
func TestSocialSignupAndLinkingRulesE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		// Under verification none no address is proven: an account with a
		// password is not reached by its address, only by connecting.
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		known := mustCreateUser(t, "known@example.com", userPass, 0)
		s.socialToken(p, p.idToken("sub-known", "known@example.com")).refusal(t, 409, "email_already_registered")

		s.reload(caddyfile(store, p.options("link_by_email off", "email_verification optional"), defaultBody))
		s.socialToken(p, p.idToken("sub-known", "known@example.com")).refusal(t, 409, "email_already_registered")
		if l := links(t, known.ID); len(l) != 0 {
			t.Fatalf("linked with link_by_email off: %+v", l)
		}

		// Lookups fold case the Unicode way; a provider's address that
		// reaches the account only so (a Kelvin sign for the K, a dotted
		// capital I) is another mailbox.
		s.reload(caddyfile(store, p.options("", "email_verification optional"), defaultBody))
		kate := mustCreateUser(t, "kate@example.com", userPass, 0)
		tim := mustCreateUser(t, "tim@example.com", userPass, 0)
		for _, folded := range []string{"\u212Aate@example.com", "\u212AATE@EXAMPLE.COM", "t\u0130m@example.com"} {
			s.socialToken(p, p.idToken("sub-fold", folded)).refusal(t, 409, "email_already_registered")
		}
		if l := append(links(t, kate.ID), links(t, tim.ID)...); len(l) != 0 {
			t.Fatalf("a folded address linked: %+v", l)
		}
		// ASCII case is the same mailbox.
		access, _ := s.socialToken(p, p.idToken("sub-kate", "KATE@Example.com")).session(t, false)
		if fmt.Sprint(claims(t, access)["user_id"]) != fmt.Sprint(kate.ID) {
			t.Fatalf("KATE@Example.com signed in as %v, want %d", claims(t, access)["user_id"], kate.ID)
		}

		s.reload(caddyfile(store, p.options("signup off", "email_verification optional"), defaultBody))
		n := userCount(t)
		s.socialToken(p, p.idToken("sub-new", "new@example.com")).refusal(t, 400, "signup_not_allowed")
		if userCount(t) != n {
			t.Fatal("signup off created an account")
		}
		access, _ = s.socialToken(p, p.idToken("sub-known", "known@example.com")).session(t, false)
		if fmt.Sprint(claims(t, access)["user_id"]) != fmt.Sprint(known.ID) {
			t.Fatalf("signed in as %v, want %d", claims(t, access)["user_id"], known.ID)
		}

		s.reload(caddyfile(store, p.options("", "registration admin_managed", "email_verification optional"), defaultBody))
		s.socialToken(p, p.idToken("sub-other", "other@example.com")).refusal(t, 403, "signup_closed")
		if userCount(t) != n {
			t.Fatal("admin_managed created an account")
		}
		s.socialToken(p, p.idToken("sub-known", "known@example.com")).session(t, false)
	})
}

// MFA is never skipped, and the link of an account reached by its
// address is written only once the second step is answered.
func TestSocialMFAGateE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options("", mfaOptions("optional", "email_verification optional")), defaultBody))

		u := mustCreateUser(t, "totp@example.com", mfaPass, 0)
		access, _ := s.login("totp@example.com", mfaPass)
		enr := s.enrol(access)
		r := s.socialToken(p, p.idToken("sub-totp", "totp@example.com")).expect(t, 200).noSession(t)
		if !r.isChallenge("totp") {
			t.Fatalf("social sign-in of an enrolled account: %s", r.raw)
		}
		if l := s.linkList(access); len(l) != 0 {
			t.Fatalf("linked before the challenge was answered: %v", l)
		}
		nextStep(t)
		s.verify(r.str("challenge_id"), wrongCode(t, enr.secret)).expect(t, 400).noSession(t)
		if l := links(t, u.ID); len(l) != 0 {
			t.Fatalf("linked after a wrong code: %+v", l)
		}
		// Answering another challenge of the account (a password login's)
		// does not write the social sign-in's link.
		byPassword, _ := s.verify(s.challenge("totp@example.com"), totpNow(t, enr.secret)).session(t, false)
		if l := s.linkList(byPassword); len(l) != 0 {
			t.Fatalf("linked by another challenge: %v", l)
		}
		nextStep(t)
		mfaAccess, _ := s.verify(r.str("challenge_id"), totpNow(t, enr.secret)).session(t, false)
		got := s.linkList(mfaAccess)
		if len(got) != 1 || got[0]["provider"] != "company" || got[0]["uid"] != "sub-totp" || got[0]["last_login"] == nil {
			t.Fatalf("links after the challenge: %v", got)
		}
		// The next sign-in by the link is challenged too.
		r = s.socialToken(p, p.idToken("sub-totp", "totp@example.com")).expect(t, 200).noSession(t)
		if r.body["mfa_required"] != true {
			t.Fatalf("second social sign-in of an enrolled account: %s", r.raw)
		}

		// In required mode an account without TOTP gets the bootstrap,
		// and the link comes with the activation's session.
		s.reload(caddyfile(store, p.options("", mfaOptions("required", "email_verification optional")), defaultBody))
		boot := mustCreateUser(t, "boot@example.com", mfaPass, 0)
		r = s.socialToken(p, p.idToken("sub-boot", "boot@example.com")).expect(t, 200).noSession(t)
		if r.body["mfa_setup_required"] != true || !hex32.MatchString(r.str("setup_challenge_id")) || len(r.body) != 2 {
			t.Fatalf("social sign-in in required mode: %s", r.raw)
		}
		if l := links(t, boot.ID); len(l) != 0 {
			t.Fatalf("linked before the bootstrap was done: %+v", l)
		}
		setup := r.str("setup_challenge_id")
		secret := s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": setup}).expect(t, 200).str("secret")
		act := s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret), "setup_challenge_id": setup})
		bootAccess, _ := act.session(t, false)
		if got := s.linkList(bootAccess); len(got) != 1 || got[0]["uid"] != "sub-boot" {
			t.Fatalf("links after the bootstrap: %v", got)
		}
		// A new identity in required mode gets the bootstrap too, no
		// session.
		r = s.socialToken(p, p.idToken("sub-fresh", "fresh@example.com")).expect(t, 200).noSession(t)
		if r.body["mfa_setup_required"] != true {
			t.Fatalf("first social sign-in in required mode: %s", r.raw)
		}
	})
}

// What an unproven party set up for an address: a sign-up in use waits
// for its confirmation (then the provider links to it); one never
// confirmed nor used is replaced, and its password is gone with it.
func TestSocialSquattedAccountE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options("", "email_verification optional", mailOptions(t)), defaultBody))
		ctx := context.Background()
		st := activeStore(t)

		used := uniqueEmail(t, "used")
		// Under optional verification the sign-up opens a session: the
		// account is in use.
		signupSession(t, s, used)
		link := confirmationLink(t, used, 1)
		squat, err := st.UserByEmail(ctx, used)
		if err != nil {
			t.Fatal(err)
		}
		s.socialToken(p, p.idToken("sub-used", used)).refusal(t, 409, "local_account_unverified")
		s.socialToken(p, p.idToken("sub-used", used)).refusal(t, 409, "local_account_unverified")
		if l := links(t, squat.ID); len(l) != 0 {
			t.Fatalf("linked to an unconfirmed account: %+v", l)
		}
		s.get(link).expect(t, 302)
		access, _ := s.socialToken(p, p.idToken("sub-used", used)).session(t, false)
		if got := fmt.Sprint(claims(t, access)["user_id"]); got != fmt.Sprint(squat.ID) {
			t.Fatalf("signed in as %s, want the confirmed account %d", got, squat.ID)
		}
		if l := links(t, squat.ID); len(l) != 1 {
			t.Fatalf("links after confirmation %+v", l)
		}

		// An unconfirmed account may connect a provider (from its own
		// session); under mandatory verification the link does not get
		// it past the confirmation.
		pending := uniqueEmail(t, "pending")
		pendingAccess, _ := signupSession(t, s, pending)
		s.post("/auth/social/company/connect/token/", map[string]string{"id_token": p.idToken("sub-pending", "elsewhere@example.com"), "client_id": p.m.ClientID}, bearer(pendingAccess)).expect(t, 201)

		// Under mandatory verification a sign-up never confirmed nor used
		// does not block the provider's owner of the address.
		s.reload(caddyfile(store, p.options("", "email_verification mandatory", mailOptions(t)), defaultBody))
		s.socialToken(p, p.idToken("sub-pending", "elsewhere@example.com")).refusal(t, 401, "email_not_verified")
		abandoned := uniqueEmail(t, "abandoned")
		s.post("/auth/registration/", signupBody(abandoned, userPass)).expect(t, 201).noSession(t)
		stale := confirmationLink(t, abandoned, 1)
		before, err := st.UserByEmail(ctx, abandoned)
		if err != nil {
			t.Fatal(err)
		}
		access, _ = s.socialToken(p, p.idToken("sub-abandoned", abandoned)).session(t, false)
		after, err := st.UserByEmail(ctx, abandoned)
		if err != nil {
			t.Fatal(err)
		}
		if after.ID == before.ID || after.PasswordHash != "" || fmt.Sprint(claims(t, access)["user_id"]) != fmt.Sprint(after.ID) {
			t.Fatalf("the abandoned sign-up %d was not replaced: now %+v", before.ID, after)
		}
		s.post("/auth/login/", map[string]string{"email": abandoned, "password": userPass}).expect(t, 401)
		s.get(stale).expect(t, 404)
	})
}

// The code flow: a code the app got from the provider's authorize leg,
// with PKCE, redeemed for a redirect URI on the allow-list.
func TestSocialCodeFlowE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		user := func(sub string) *mockoidc.MockUser {
			return &mockoidc.MockUser{Subject: sub, Email: sub + "@example.com", EmailVerified: true}
		}
		redeem := func(code, callback, verifier string) reply {
			return s.post("/auth/social/company/code/", map[string]string{"code": code, "callback_url": callback, "code_verifier": verifier, "client_id": p.m.ClientID})
		}

		verifier, challenge := pkce(t)
		code := p.code(user("coder"), socialCallback, challenge)
		access, refresh := redeem(code, socialCallback, verifier).session(t, false)
		if r := s.get("/auth/user/", bearer(access)).expect(t, 200); r.str("email") != "coder@example.com" {
			t.Fatalf("/user/: %s", r.raw)
		}
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		// A code works once.
		redeem(code, socialCallback, verifier).refusal(t, 401, "invalid_social_token")

		// A redirect URI off the list is refused before the provider is
		// asked: the code is still good afterwards.
		verifier, challenge = pkce(t)
		other := "https://evil.example.com/cb/"
		code = p.code(user("listed"), other, challenge)
		redeem(code, other, verifier).refusal(t, 400, "callback_url_not_allowed")
		redeem(code, socialCallback+"x", verifier).refusal(t, 400, "callback_url_not_allowed")
		redeem(code, socialCallback, verifier).session(t, false)

		verifier, challenge = pkce(t)
		code = p.code(user("wrongverifier"), socialCallback, challenge)
		wrong, _ := pkce(t)
		redeem(code, socialCallback, wrong).refusal(t, 401, "invalid_social_token")
		code = p.code(user("noverifier"), socialCallback, challenge)
		redeem(code, socialCallback, "").refusal(t, 401, "invalid_social_token")
		redeem("not-a-code", socialCallback, verifier).refusal(t, 401, "invalid_social_token")
		s.post("/auth/social/company/code/", map[string]string{"code": code, "callback_url": socialCallback, "code_verifier": verifier, "client_id": "someone-else"}).refusal(t, 401, "client_id_mismatch")
		r := s.post("/auth/social/company/code/", map[string]string{"client_id": p.m.ClientID}).expect(t, 400)
		if r.fieldMsg("code") == "" || r.fieldMsg("callback_url") == "" {
			t.Fatalf("a code flow body without code: %s", r.raw)
		}
		for _, sub := range []string{"wrongverifier", "noverifier"} {
			if _, err := activeStore(t).UserByEmail(context.Background(), sub+"@example.com"); !errors.Is(err, account.ErrNotFound) {
				t.Fatalf("a refused code flow created %s: %v", sub, err)
			}
		}
	})
}

// Connecting a provider to a signed-in account, listing and removing
// links.
func TestSocialConnectE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		connect := func(access, idToken string, extra ...string) reply {
			body := map[string]string{"id_token": idToken, "client_id": p.m.ClientID}
			if len(extra) == 2 {
				body[extra[0]] = extra[1]
			}
			return s.post("/auth/social/company/connect/token/", body, bearer(access))
		}

		owner := mustCreateUser(t, userEmail, userPass, 0)
		access, _ := s.login(userEmail, userPass)
		r := connect(access, p.idToken("sub-owner", "elsewhere@example.com")).expect(t, 201)
		l := linkShape(t, r.body)
		if l["provider"] != "company" || l["uid"] != "sub-owner" || l["last_login"] != nil {
			t.Fatalf("connect: %s", r.raw)
		}
		// Connecting it again answers the same link.
		if again := linkShape(t, connect(access, p.idToken("sub-owner", "elsewhere@example.com")).expect(t, 201).body); linkID(again) != linkID(l) {
			t.Fatalf("connect again: %v, first %v", again, l)
		}
		list := s.linkList(access)
		if len(list) != 1 || linkID(list[0]) != linkID(l) {
			t.Fatalf("accounts: %v", list)
		}
		// The provider now signs in to the account (its address is not
		// the account's).
		signed, _ := s.socialToken(p, p.idToken("sub-owner", "elsewhere@example.com")).session(t, false)
		if fmt.Sprint(claims(t, signed)["user_id"]) != fmt.Sprint(owner.ID) {
			t.Fatalf("signed in as %v, want %d", claims(t, signed)["user_id"], owner.ID)
		}
		if list := s.linkList(access); len(list) != 1 || list[0]["last_login"] == nil {
			t.Fatalf("accounts after signing in by the link: %v", list)
		}
		s.post("/auth/social/nope/connect/token/", map[string]string{"id_token": p.idToken("sub-x", "x@example.com"), "client_id": p.m.ClientID}, bearer(access)).refusal(t, 404, "provider_not_configured")
		s.get("/auth/social/accounts/").expect(t, 401)
		connect("", p.idToken("sub-anon", "anon@example.com")).expect(t, 401)

		// An identity linked to another account is refused.
		otherAccess, _ := s.socialToken(p, p.idToken("sub-other", "other@example.com")).session(t, false)
		connect(access, p.idToken("sub-other", "other@example.com")).refusal(t, 409, "social_account_in_use")
		connect(access, p.idToken("sub-x", "x@example.com"), "client_id", "someone-else").refusal(t, 401, "client_id_mismatch")

		// Past reauth_window the session must prove itself again: the
		// password in the body (checked), or a new sign-in.
		advance(t, 10*time.Minute+time.Second)
		connect(access, p.idToken("sub-second", "second@example.com")).refusal(t, 403, "reauthentication_required")
		connect(access, p.idToken("sub-second", "second@example.com"), "password", "not-the-password").detail(t, 400, "Invalid password.")
		second := linkShape(t, connect(access, p.idToken("sub-second", "second@example.com"), "password", userPass).expect(t, 201).body)
		if len(s.linkList(access)) != 2 {
			t.Fatalf("accounts after the second connect: %v", s.linkList(access))
		}

		// Removing: another user's link is not found, the owner's goes.
		otherLinks := s.linkList(otherAccess)
		if len(otherLinks) != 1 {
			t.Fatalf("other's links %v", otherLinks)
		}
		s.req(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", linkID(otherLinks[0])), nil, bearer(access)).expect(t, 404)
		s.req(http.MethodDelete, "/auth/social/accounts/not-an-id/", nil, bearer(access)).expect(t, 404)
		s.req(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", linkID(second)), nil, bearer(access)).expect(t, 204)
		s.req(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", linkID(second)), nil, bearer(access)).expect(t, 404)
		// With a password, the last link may go too.
		s.req(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", linkID(l)), nil, bearer(access)).expect(t, 204)
		if got := s.linkList(access); len(got) != 0 {
			t.Fatalf("accounts after removing both: %v", got)
		}
		// The password-less account's only link is its last way in.
		s.req(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", linkID(otherLinks[0])), nil, bearer(otherAccess)).refusal(t, 400, "disconnect_not_allowed")
		if got := s.linkList(otherAccess); len(got) != 1 {
			t.Fatalf("the last link went: %v", got)
		}
	})
}

// Forged and misdirected ID tokens, through the whole stack.
func TestSocialForgedTokensE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		local := mustCreateUser(t, "victim@example.com", userPass, 0)
		n := userCount(t)

		with := func(mod func(jwt.MapClaims)) jwt.MapClaims {
			c := p.claims("sub-victim", "victim@example.com", true)
			mod(c)
			return c
		}
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		kid, _ := p.m.Keypair.KeyID()
		base := p.claims("sub-victim", "victim@example.com", true)
		none := unsignedToken(t, map[string]any{"alg": "none", "typ": "JWT"}, base, "")
		hs := signWith(t, jwt.SigningMethodHS256, []byte(p.m.ClientSecret), base, map[string]any{"kid": kid})
		stranger := signWith(t, jwt.SigningMethodRS256, other, base, map[string]any{"kid": "not-published"})
		sameKid := signWith(t, jwt.SigningMethodRS256, other, base, map[string]any{"kid": kid})

		s.socialToken(p, p.signed(with(func(c jwt.MapClaims) { c["aud"] = "another-client" }))).refusal(t, 401, "client_id_mismatch")
		s.socialToken(p, p.signed(with(func(c jwt.MapClaims) { c["aud"] = []string{p.m.ClientID, "x"}; c["azp"] = "x" }))).refusal(t, 401, "client_id_mismatch")
		for name, tok := range map[string]string{
			"wrong iss":                 p.signed(with(func(c jwt.MapClaims) { c["iss"] = "https://evil.example.com" })),
			"expired":                   p.signed(with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
			"alg none":                  none,
			"HS256 with the secret":     hs,
			"unknown kid":               stranger,
			"the provider's kid, other": sameKid,
			"no subject":                p.signed(with(func(c jwt.MapClaims) { delete(c, "sub") })),
		} {
			r := s.socialToken(p, tok)
			if r.status != 401 || r.str("code") != "invalid_social_token" {
				t.Errorf("%s: %d %s", name, r.status, r.raw)
			}
		}
		// The provider does not vouch for the address: the local account
		// with it is not reached.
		s.socialToken(p, p.signed(p.claims("sub-victim", "victim@example.com", false))).refusal(t, 400, "provider_email_unverified")
		if l := links(t, local.ID); len(l) != 0 {
			t.Fatalf("links of the victim after forgeries: %+v", l)
		}
		if userCount(t) != n {
			t.Fatal("a forgery created an account")
		}

		// Connecting, by the code flow, a provider account that signs in
		// to someone else is refused.
		s.socialToken(p, p.idToken("sub-taken", "taken@example.com")).session(t, false)
		access, _ := s.login("victim@example.com", userPass)
		verifier, challenge := pkce(t)
		code := p.code(&mockoidc.MockUser{Subject: "sub-taken", Email: "taken@example.com", EmailVerified: true}, socialCallback, challenge)
		s.post("/auth/social/company/connect/code/", map[string]string{"code": code, "callback_url": socialCallback, "code_verifier": verifier, "client_id": p.m.ClientID}, bearer(access)).refusal(t, 409, "social_account_in_use")
		if l := links(t, local.ID); len(l) != 0 {
			t.Fatalf("the taken identity was linked to the victim: %+v", l)
		}
	})
}

// Twenty first sign-ins of one new identity at once: one account and one
// link, and every one of them signs in to it (a double tap is no error).
func TestSocialFirstSignInRaceE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		tok := p.idToken("sub-race", "race@example.com")
		body := map[string]string{"id_token": tok, "client_id": p.m.ClientID}
		const n = 20
		statuses, errs, replies := race(n, func(int) (reply, error) {
			return s.try(http.MethodPost, "/auth/social/company/token/", body)
		})
		u, err := activeStore(t).UserByEmail(context.Background(), "race@example.com")
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if statuses[i] != 200 || replies[i].str("access") == "" {
				t.Fatalf("sign-in %d of %d: %d %s", i, n, statuses[i], replies[i].raw)
			}
			if got := fmt.Sprint(claims(t, replies[i].str("access"))["user_id"]); got != fmt.Sprint(u.ID) {
				t.Fatalf("sign-in %d landed on user %s, want %d", i, got, u.ID)
			}
		}
		if c := userCount(t); c != 1 {
			t.Fatalf("%d users after the race, want 1", c)
		}
		var linked int
		if err := storeDB(t).QueryRow(`SELECT COUNT(*) FROM social_accounts`).Scan(&linked); err != nil {
			t.Fatal(err)
		}
		if linked != 1 {
			t.Fatalf("%d links after the race, want 1", linked)
		}
	})
}

// Removing the last two links of a password-less account at once leaves
// one: at most one removal wins, never none is left.
func TestSocialDisconnectRaceE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options(""), defaultBody))
		for round := range 5 {
			sub := fmt.Sprintf("sub-%d", round)
			access, _ := s.socialToken(p, p.idToken(sub, sub+"@example.com")).session(t, false)
			s.post("/auth/social/company/connect/token/", map[string]string{"id_token": p.idToken(sub+"-b", "b@example.com"), "client_id": p.m.ClientID}, bearer(access)).expect(t, 201)
			list := s.linkList(access)
			if len(list) != 2 {
				t.Fatalf("links %v", list)
			}
			ids := []int64{linkID(list[0]), linkID(list[1])}
			const n = 8
			statuses, errs, replies := race(n, func(i int) (reply, error) {
				return s.try(http.MethodDelete, fmt.Sprintf("/auth/social/accounts/%d/", ids[i%2]), nil, bearer(access))
			})
			won := 0
			for i, st := range statuses {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				switch {
				case st == 204:
					won++
				case st == 400 && replies[i].str("code") == "disconnect_not_allowed", st == 404:
				default:
					t.Fatalf("removal %d: %d %s", i, st, replies[i].raw)
				}
			}
			left := s.linkList(access)
			if won != 1 || len(left) != 1 {
				t.Fatalf("round %d: %d removals won, %d links left (%v)", round, won, len(left), statuses)
			}
			// The link left still signs in.
			tok := p.idToken(left[0]["uid"].(string), "whatever@example.com")
			s.socialToken(p, tok).session(t, false)
		}
	})
}

// A social sign-in is audited with its provider and counted by provider
// and result; a provider that cannot be reached fails its own sign-ins as
// a failing dependency.
func TestSocialAuditAndMetricsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		down := "http://127.0.0.1:" + freePort() + "/oidc"
		opts := p.options("") + "\n\t\tsocial down oidc " + down + " {\n\t\t\tclient_id down-client\n\t\t}"
		cf, audit := withAuditLog(t, caddyfile(store, opts, defaultBody))
		s := startCaddy(t, cf)
		const ok, failed = `caddy_jwt_allauth_social_logins_total{provider="company",result="success"}`, `caddy_jwt_allauth_social_logins_total{provider="company",result="failure"}`
		okBefore, failedBefore := metric(t, ok), metric(t, failed)
		n := auditDetails(audit())

		access, _ := s.socialToken(p, p.idToken("sub-audit", "audit@example.com")).session(t, false)
		n = expectAudit(t, audit, n, "first social sign-in", "social_login_succeeded", "social_linked/signup")
		s.socialToken(p, p.idToken("sub-audit", "audit@example.com")).session(t, false)
		n = expectAudit(t, audit, n, "second social sign-in", "social_login_succeeded")
		s.socialToken(p, p.signed(p.claims("sub-audit2", "audit2@example.com", false))).refusal(t, 400, "provider_email_unverified")
		expectAudit(t, audit, n, "refused social sign-in", "social_login_failed/provider_email_unverified")

		userID := fmt.Sprint(claims(t, access)["user_id"])
		var seen int
		for _, l := range audit() {
			if l["event"] != "social_login_succeeded" {
				continue
			}
			seen++
			if l["provider"] != "company" || l["user_id"] != userID {
				t.Fatalf("audit line %v, want provider company and user %s", l, userID)
			}
			for _, v := range l {
				if s, _ := v.(string); strings.Contains(s, "audit@example.com") || strings.Contains(s, "eyJ") {
					t.Fatalf("audit line shows the address or a token: %v", l)
				}
			}
		}
		if seen != 2 {
			t.Fatalf("%d social_login_succeeded lines, want 2", seen)
		}
		if d := metric(t, ok) - okBefore; d != 2 {
			t.Fatalf("social logins success grew by %v, want 2", d)
		}
		if d := metric(t, failed) - failedBefore; d != 1 {
			t.Fatalf("social logins failure grew by %v, want 1", d)
		}

		const downErrors = `caddy_jwt_allauth_social_logins_total{provider="down",result="error"}`
		before := metric(t, downErrors)
		const providerErrors, storeErrors = `caddy_jwt_allauth_provider_errors_total`, `caddy_jwt_allauth_store_errors_total`
		providerBefore, storeBefore := metric(t, providerErrors), metric(t, storeErrors)
		r := s.post("/auth/social/down/token/", map[string]string{"id_token": p.idToken("sub-down", "down@example.com"), "client_id": "down-client"})
		if r.status != http.StatusServiceUnavailable || r.str("code") != "service_unavailable" {
			t.Fatalf("a provider that is down: %d %s", r.status, r.raw)
		}
		if d := metric(t, downErrors) - before; d != 1 {
			t.Fatalf("social logins error for the provider that is down grew by %v, want 1", d)
		}
		// The outage is the provider's, not the store's.
		if dp, ds := metric(t, providerErrors)-providerBefore, metric(t, storeErrors)-storeBefore; dp != 1 || ds != 0 {
			t.Fatalf("provider errors grew by %v, store errors by %v; want 1 and 0", dp, ds)
		}
		// The other provider still works.
		s.socialToken(p, p.idToken("sub-audit", "audit@example.com")).session(t, false)
	})
}

// A live invitation proves the mailbox: the invitee's first sign-in with
// a provider vouching for the address reaches the invited account, even
// with sign-up closed, confirms it and ends the invitation.
func TestSocialInvitationE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		p := startIdP(t)
		s := startCaddy(t, caddyfile(store, p.options("", "registration admin_managed", "email_verification mandatory", mailOptions(t)), defaultBody))
		mustCreateUser(t, "staff@example.com", userPass, 1000)
		staff, _ := s.login("staff@example.com", userPass)
		invitee := uniqueEmail(t, "invitee")
		s.post("/auth/registration/user-register/", map[string]any{"email": invitee, "role": 300}, bearer(staff)).expect(t, 201)
		link := linkPath(t, waitMails(t, invitee, 1), "/auth/registration/verification/")
		invited, err := activeStore(t).UserByEmail(context.Background(), invitee)
		if err != nil {
			t.Fatal(err)
		}

		access, _ := s.socialToken(p, p.idToken("sub-invitee", invitee)).session(t, false)
		c := claims(t, access)
		if c["user_id"] != fmt.Sprint(invited.ID) || c["role"] != float64(300) || c["email_verified"] != true {
			t.Fatalf("the invitee signed in with claims %v, want user %d, role 300, verified", c, invited.ID)
		}
		if l := links(t, invited.ID); len(l) != 1 || l[0].UID != "sub-invitee" {
			t.Fatalf("links of the invitee %+v", l)
		}
		s.get(link).expect(t, 404)
	})
}

// A provider may not take the name of a fixed endpoint under
// {prefix}/social/: `accounts` would have every path of its flows
// answered by the removal of links.
func TestSocialReservedIDsE2E(t *testing.T) {
	p := startIdP(t)
	for _, id := range []string{"accounts", "providers"} {
		t.Run(id, func(t *testing.T) {
			opts := fmt.Sprintf("social %s oidc %s {\n\t\t\tclient_id %s\n\t\t}", id, p.m.Issuer(), p.m.ClientID)
			refusesToStart(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", opts, defaultBody), "social "+id+": the id is reserved")
		})
	}
}

// social_ip counts every sign-in with a provider from one client, good or
// bad, before the provider is asked.
func TestSocialThrottleE2E(t *testing.T) {
	p := startIdP(t)
	s := startCaddy(t, caddyfile("store sqlite "+t.TempDir()+"/a.db", p.options("", "throttle social_ip 3 1m"), defaultBody))
	const throttled = `caddy_jwt_allauth_social_logins_total{provider="company",result="throttled"}`
	before := metric(t, throttled)
	s.socialToken(p, p.idToken("sub-t", "t@example.com")).session(t, false)
	s.socialToken(p, "not.a.jwt").refusal(t, 401, "invalid_social_token")
	s.socialToken(p, p.idToken("sub-t", "t@example.com")).session(t, false)
	r := s.socialToken(p, p.idToken("sub-t", "t@example.com")).expect(t, 429).noSession(t)
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("throttled without Retry-After: %v", r.header)
	}
	if d := metric(t, throttled) - before; d != 1 {
		t.Fatalf("throttled social logins grew by %v, want 1", d)
	}
	advance(t, time.Minute+time.Second)
	s.socialToken(p, p.idToken("sub-t", "t@example.com")).session(t, false)
}
