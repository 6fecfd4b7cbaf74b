package caddyauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth"
	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/account"
)

// End-to-end proof of MFA TOTP (issue #3): the reference's MFA endpoints
// and their scenarios, against a real Caddy on SQLite and PostgreSQL.
// Codes are computed from the secret the server hands out, as an
// authenticator app would, with pquerna/otp at the realm's time. Each time
// step is accepted once per user, so the tests move the realm clock to the
// next step between codes instead of sleeping.

const (
	mfaPass = "Val1dPasw0rd"
	// purposes of the generic token rows the tests look at.
	purposeLoginChallenge = "mfa_login_challenge"
	purposeSetupSecret    = "mfa_setup_secret"
	purposeAttempt        = "mfa_login_attempt"
)

var (
	base32Secret   = regexp.MustCompile(`^[A-Z2-7]{32}$`)
	hex32          = regexp.MustCompile(`^[0-9a-f]{32}$`)
	crockfordCode  = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$`)
	svgViewBox     = regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`)
	svgPathData    = regexp.MustCompile(`<path [^>]*\bd="([^"]*)"`)
	svgRunCommand  = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`)
	retryAfterText = regexp.MustCompile(`^Too many failed MFA attempts\. Try again later\. Expected available in (\d+) seconds?\.$`)
)

// mfaOptions is the jwt_allauth global option body for a mode plus extras.
func mfaOptions(mode string, extra ...string) string {
	return strings.Join(append([]string{"mfa_totp_mode " + mode}, extra...), "\n\t\t")
}

// realmNow is the running realm's clock.
func realmNow(t *testing.T) time.Time {
	t.Helper()
	now, err := caddyauth.Now()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// totpAt is the code an authenticator app shows for secret, steps time
// steps away from the realm's current one.
func totpAt(t *testing.T, secret string, steps int) string {
	t.Helper()
	at := realmNow(t).Add(time.Duration(steps) * 30 * time.Second)
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func totpNow(t *testing.T, secret string) string { t.Helper(); return totpAt(t, secret, 0) }

// wrongCode returns six digits that no step within two of now matches.
func wrongCode(t *testing.T, secret string) string {
	t.Helper()
	near := map[string]bool{}
	for s := -2; s <= 2; s++ {
		near[totpAt(t, secret, s)] = true
	}
	for n := 135792; ; n++ {
		if c := fmt.Sprintf("%06d", n%1000000); !near[c] {
			return c
		}
	}
}

// nextStep moves the realm clock to one second into the next TOTP step, so
// that the codes a test computes next stay current for 29 seconds whatever
// the wall clock does meanwhile.
func nextStep(t *testing.T) {
	t.Helper()
	now := realmNow(t)
	into := time.Duration(now.UnixNano() % int64(30*time.Second))
	advance(t, 30*time.Second-into+time.Second)
}

// reload loads cf into the running Caddy (a config reload: a new realm on
// the same store, as another node would be) and moves the new realm's clock
// to where the old one was.
func (s *site) reload(cf string) {
	s.t.Helper()
	before := realmNow(s.t)
	loadCaddyfile(s.t, cf)
	s.resume(before)
}

// restart stops Caddy entirely and starts it again from cf on the same
// store: every bit of state must come back from the database.
func (s *site) restart(cf string) {
	s.t.Helper()
	before := realmNow(s.t)
	if err := caddy.Stop(); err != nil {
		s.t.Fatalf("stopping caddy: %v", err)
	}
	loadCaddyfile(s.t, cf)
	s.resume(before)
}

// resume drops the connections to the old server, waits until fresh
// connections reach the new one, and sets the new realm's clock to at
// least before.
func (s *site) resume(before time.Time) {
	s.t.Helper()
	s.client.CloseIdleConnections()
	waitServing(s.t)
	if d := before.Sub(realmNow(s.t)); d > 0 {
		advance(s.t, d)
	}
}

func activeStore(t *testing.T) account.Store {
	t.Helper()
	st, err := caddyauth.ActiveStore()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// storeDB is the SQL database under the running store.
func storeDB(t *testing.T) *sql.DB {
	t.Helper()
	d, ok := activeStore(t).(interface{ DB() *sql.DB })
	if !ok {
		t.Fatalf("store %T does not expose its database", activeStore(t))
	}
	return d.DB()
}

// attempts counts every failure row of the user, old or new.
func attempts(t *testing.T, userID int64) int {
	t.Helper()
	rows, err := activeStore(t).UserTokens(context.Background(), userID, purposeAttempt, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

// sessions counts the user's refresh-token whitelist rows.
func sessions(t *testing.T, userID int64) int {
	t.Helper()
	var n int
	if err := storeDB(t).QueryRow(`SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1`, userID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// mintChallenge stores a live login challenge for the user the way the
// login gate does (the table keeps the id's SHA-256), for the cases where
// /login/ itself would refuse to hand one out or would cost a password hash
// per challenge.
func mintChallenge(t *testing.T, userID int64) string {
	t.Helper()
	id := randomHex(t, 16)
	sum := sha256.Sum256([]byte(id))
	_, err := activeStore(t).CreateToken(context.Background(), account.Token{
		UserID: userID, Purpose: purposeLoginChallenge, Token: hex.EncodeToString(sum[:]), Created: realmNow(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// detail fails the test unless r has status and exactly this detail.
func (r reply) detail(t *testing.T, status int, msg string) reply {
	t.Helper()
	r.expect(t, status)
	if got := r.str("detail"); got != msg {
		t.Fatalf("detail %q, want %q; body: %s", got, msg, r.raw)
	}
	return r
}

// noSession fails the test if r hands out any token.
func (r reply) noSession(t *testing.T) reply {
	t.Helper()
	if r.body["access"] != nil || r.body["refresh"] != nil {
		t.Fatalf("tokens in the body: %s", r.raw)
	}
	if _, ok := r.cookie("refresh_token"); ok {
		t.Fatalf("refresh cookie set: %v", r.header)
	}
	return r
}

// session checks that r opened a session delivered as configured and
// returns its access and refresh tokens.
func (r reply) session(t *testing.T, bodyMode bool) (access, refresh string) {
	t.Helper()
	r.expect(t, 200)
	access = r.str("access")
	if access == "" {
		t.Fatalf("no access token: %s", r.raw)
	}
	c, hasCookie := r.cookie("refresh_token")
	if bodyMode {
		if hasCookie || r.str("refresh") == "" {
			t.Fatalf("body mode: cookie %v, body %s", hasCookie, r.raw)
		}
		return access, r.str("refresh")
	}
	if !hasCookie || c.Value == "" || !c.HttpOnly || r.body["refresh"] != nil {
		t.Fatalf("cookie mode: cookie %+v, body %s", c, r.raw)
	}
	return access, c.Value
}

// challenge logs in a user who has TOTP and returns the login challenge.
func (s *site) challenge(email string) string {
	s.t.Helper()
	r := s.post("/auth/login/", map[string]string{"email": email, "password": mfaPass}).expect(s.t, 200).noSession(s.t)
	if !r.isChallenge("totp") {
		s.t.Fatalf("login of an enrolled user: %s", r.raw)
	}
	return r.str("challenge_id")
}

// isChallenge reports whether r is the reference's login challenge,
// `{"mfa_required": true, "challenge_id"}`, plus the additive `methods`,
// which names method.
func (r reply) isChallenge(method string) bool {
	methods, _ := r.body["methods"].([]any)
	return r.body["mfa_required"] == true && hex32.MatchString(r.str("challenge_id")) && len(r.body) == 3 && slices.Contains(methods, any(method))
}

// bootstrap logs in a user without TOTP in required mode and returns the
// setup challenge.
func (s *site) bootstrap(email string) string {
	s.t.Helper()
	r := s.post("/auth/login/", map[string]string{"email": email, "password": mfaPass}).expect(s.t, 200).noSession(s.t)
	if r.body["mfa_setup_required"] != true || !hex32.MatchString(r.str("setup_challenge_id")) || len(r.body) != 2 {
		s.t.Fatalf("bootstrap login: %s", r.raw)
	}
	return r.str("setup_challenge_id")
}

func (s *site) verify(challenge, code string) reply {
	s.t.Helper()
	return s.post("/auth/mfa/verify/", map[string]string{"challenge_id": challenge, "code": code})
}

func (s *site) verifyRecovery(challenge, code string) reply {
	s.t.Helper()
	return s.post("/auth/mfa/verify-recovery/", map[string]string{"challenge_id": challenge, "recovery_code": code})
}

// recoveryCodes reads and checks the recovery codes of an answer: ten
// distinct 16-character Crockford codes.
func recoveryCodes(t *testing.T, r reply) []string {
	t.Helper()
	list, _ := r.body["recovery_codes"].([]any)
	seen := map[string]bool{}
	var codes []string
	for _, v := range list {
		c, _ := v.(string)
		if !crockfordCode.MatchString(c) || seen[c] {
			t.Fatalf("bad or repeated recovery code %q in %s", c, r.raw)
		}
		seen[c] = true
		codes = append(codes, c)
	}
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes, want 10: %s", len(codes), r.raw)
	}
	return codes
}

// enrolment is what setting TOTP up handed out.
type enrolment struct {
	secret   string
	recovery []string
}

// enrol sets TOTP up for the bearer of access, activates it with the
// current code and leaves the clock in that step (the activation code is
// then spent for the step).
func (s *site) enrol(access string) enrolment {
	s.t.Helper()
	t := s.t
	setup := s.post("/auth/mfa/setup/", nil, bearer(access)).expect(t, 200)
	secret := setup.str("secret")
	act := s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret)}, bearer(access)).expect(t, 200)
	if act.body["success"] != true {
		t.Fatalf("activate: %s", act.raw)
	}
	return enrolment{secret: secret, recovery: recoveryCodes(t, act)}
}

// enrolledUser creates a user, logs in and enrols TOTP (optional mode).
func (s *site) enrolledUser(email string) (account.User, enrolment) {
	s.t.Helper()
	u := mustCreateUser(s.t, email, mfaPass, 0)
	access, _ := s.login(email, mfaPass)
	return u, s.enrol(access)
}

// decodeQR renders the SVG the server returned to pixels, four a module,
// and reads it back with a QR decoder, as a phone camera would.
func decodeQR(t *testing.T, svg string) string {
	t.Helper()
	if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>") {
		t.Fatalf("qr_code is not an SVG document: %.80s", svg)
	}
	vb := svgViewBox.FindStringSubmatch(svg)
	d := svgPathData.FindStringSubmatch(svg)
	if vb == nil || vb[1] != vb[2] || d == nil {
		t.Fatalf("SVG without a square viewBox and a path: %.200s", svg)
	}
	if rest := svgRunCommand.ReplaceAllString(d[1], ""); rest != "" {
		t.Fatalf("path commands this renderer does not draw: %.60s", rest)
	}
	const scale = 4
	size, _ := strconv.Atoi(vb[1])
	img := image.NewGray(image.Rect(0, 0, size*scale, size*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for _, m := range svgRunCommand.FindAllStringSubmatch(d[1], -1) {
		x, _ := strconv.Atoi(m[1])
		y, _ := strconv.Atoi(m[2])
		n, _ := strconv.Atoi(m[3])
		for px := x * scale; px < (x+n)*scale; px++ {
			for py := y * scale; py < (y+1)*scale; py++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		// gozxing 0.1.1's finder/alignment detector misses about one valid
		// version-6 code in five, its own encoder's output included (zbar
		// reads every one of them). Then read the modules straight off the
		// grid: format information, mask, data and error correction are
		// still decoded from the rendered pixels.
		res, err = qrcode.NewQRCodeReader().Decode(bmp, map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_PURE_BARCODE: true})
	}
	if err != nil {
		t.Fatalf("the QR code does not scan: %v", err)
	}
	return res.GetText()
}

// checkSetup checks a /mfa/setup/ answer: a 32-character base32 secret, the
// provisioning URI for issuer and email, and a QR code that scans to it.
func checkSetup(t *testing.T, r reply, issuer, email string) string {
	t.Helper()
	r.expect(t, 200)
	secret := r.str("secret")
	if !base32Secret.MatchString(secret) {
		t.Fatalf("secret %q is not 32 base32 characters", secret)
	}
	uri := r.str("provisioning_uri")
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatalf("provisioning_uri %q: %v", uri, err)
	}
	label := strings.TrimPrefix(u.Path, "/")
	if u.Scheme != "otpauth" || u.Host != "totp" || label != issuer+":"+email ||
		u.Query().Get("secret") != secret || u.Query().Get("issuer") != issuer {
		t.Fatalf("provisioning_uri %q, want otpauth://totp/%s:%s?secret=%s&issuer=%s", uri, issuer, email, secret, issuer)
	}
	// Spaces are %20 in the label and in the issuer parameter alike: Google
	// and Microsoft Authenticator show a "+" in the parameter as a plus.
	escIssuer := strings.ReplaceAll(url.QueryEscape(issuer), "+", "%20")
	if want := "otpauth://totp/" + escIssuer + ":" + url.QueryEscape(email) + "?secret=" + secret +
		"&issuer=" + escIssuer; uri != want {
		t.Fatalf("provisioning_uri %q, want %q", uri, want)
	}
	if got := decodeQR(t, r.str("qr_code")); got != uri {
		t.Fatalf("QR code reads %q, want %q", got, uri)
	}
	// An authenticator app fed the URI computes the codes the server takes.
	key, err := otp.NewKeyFromURL(uri)
	if err != nil || key.Secret() != secret || key.Issuer() != issuer || key.AccountName() != email {
		t.Fatalf("otp cannot read %q: %v", uri, err)
	}
	return secret
}

// TestMFAModeMatrixE2E walks the spec's behaviour matrix: each mode against
// login without and with TOTP, /mfa/setup/ and /mfa/deactivate/, switching
// modes with config reloads over one store.
func TestMFAModeMatrixE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := func(mode string) string { return caddyfile(store, mfaOptions(mode), defaultBody) }
		s := startCaddy(t, cf("optional"))
		const plain, enrolled, spare = "plain@world.com", "enrolled@world.com", "spare@world.com"
		mustCreateUser(t, plain, mfaPass, 0)
		mustCreateUser(t, spare, mfaPass, 0)
		_, en := s.enrolledUser(enrolled)
		spareAccess, _ := s.login(spare, mfaPass)

		// disabled: login ignores the authenticator; every MFA endpoint is 403.
		s.reload(cf("disabled"))
		s.login(plain, mfaPass)
		access, _ := s.login(enrolled, mfaPass)
		nextStep(t)
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", "/auth/mfa/setup/", nil},
			{"POST", "/auth/mfa/activate/", map[string]string{"code": totpNow(t, en.secret)}},
			{"GET", "/auth/mfa/authenticators/", nil},
			{"POST", "/auth/mfa/deactivate/", map[string]string{"password": mfaPass}},
			{"POST", "/auth/mfa/recovery-codes/regenerate/", map[string]string{"code": totpNow(t, en.secret)}},
			{"POST", "/auth/mfa/verify/", map[string]string{}},
			{"POST", "/auth/mfa/verify-recovery/", map[string]string{}},
		} {
			s.req(c.method, c.path, c.body, bearer(access)).detail(t, 403, "MFA TOTP is disabled.")
		}
		// Permission comes first: no credentials is still a 401.
		s.post("/auth/mfa/setup/", nil).detail(t, 401, "Authentication credentials were not provided.")
		s.post("/auth/mfa/deactivate/", map[string]string{"password": mfaPass}).expect(t, 401)

		// required: no TOTP => bootstrap; TOTP => challenge; setup allowed;
		// deactivate refused before the body and the password are looked at.
		s.reload(cf("required"))
		setupID := s.bootstrap(plain)
		checkSetup(t, s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": setupID}), "JWT-Allauth", plain)
		// A session from before the switch keeps working and may set up.
		checkSetup(t, s.post("/auth/mfa/setup/", nil, bearer(spareAccess)), "JWT-Allauth", spare)
		ch := s.challenge(enrolled)
		access, _ = s.verify(ch, totpNow(t, en.secret)).session(t, false)
		for _, body := range []any{map[string]string{"password": mfaPass}, map[string]string{"password": "wrong"}, nil} {
			s.post("/auth/mfa/deactivate/", body, bearer(access)).detail(t, 403, "MFA TOTP is required and cannot be disabled.")
		}
		r := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200)
		if len(r.list) != 2 {
			t.Fatalf("authenticators in required mode: %s", r.raw)
		}

		// optional: no TOTP => tokens; TOTP => challenge; setup and
		// deactivate allowed.
		s.reload(cf("optional"))
		s.login(plain, mfaPass)
		nextStep(t)
		ch = s.challenge(enrolled)
		access, _ = s.verify(ch, totpNow(t, en.secret)).session(t, false)
		plainAccess, _ := s.login(plain, mfaPass)
		checkSetup(t, s.post("/auth/mfa/setup/", nil, bearer(plainAccess)), "JWT-Allauth", plain)
		s.post("/auth/mfa/deactivate/", nil).detail(t, 401, "Authentication credentials were not provided.")
		r = s.post("/auth/mfa/deactivate/", nil, bearer(access)).expect(t, 400)
		if r.fieldMsg("password") != "This field is required." {
			t.Fatalf("deactivate without password: %s", r.raw)
		}
		s.post("/auth/mfa/deactivate/", map[string]string{"password": "not-the-password"}, bearer(access)).detail(t, 400, "Invalid password.")
		r = s.post("/auth/mfa/deactivate/", map[string]string{"password": mfaPass}, bearer(access)).expect(t, 200)
		if r.body["success"] != true || len(r.body) != 1 {
			t.Fatalf("deactivate: %s", r.raw)
		}
		if r := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200); len(r.list) != 0 || string(bytes.TrimSpace(r.raw)) != "[]" {
			t.Fatalf("authenticators after deactivate: %s", r.raw)
		}
		s.post("/auth/mfa/deactivate/", map[string]string{"password": mfaPass}, bearer(access)).detail(t, 400, "TOTP not activated.")
		// Without TOTP the login is plain again, and the recovery codes died too.
		s.login(enrolled, mfaPass)
		if n, err := activeStore(t).CountRecoveryCodes(context.Background(), mustUser(t, enrolled).ID); err != nil || n != 0 {
			t.Fatalf("recovery codes after deactivate: %d %v", n, err)
		}
	})
}

func mustUser(t *testing.T, email string) account.User {
	t.Helper()
	u, err := activeStore(t).UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestMFAOptionalFlowE2E is the reference's optional-mode scenario (M1–M11) plus the storage
// properties: secrets sealed at rest, recovery codes hashed.
func TestMFAOptionalFlowE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional"), defaultBody))
		const email = "mfa.user@world.com"
		u := mustCreateUser(t, email, mfaPass, 0)
		access, _ := s.login(email, mfaPass)
		db := storeDB(t)
		ctx := context.Background()

		// M1: credentials, methods.
		r := s.post("/auth/mfa/setup/", nil).detail(t, 401, "Authentication credentials were not provided.")
		if r.header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": randomHex(t, 16)}).detail(t, 401, "Authentication credentials were not provided.")
		for _, m := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			s.req(m, "/auth/mfa/setup/", nil, bearer(access)).detail(t, 405, `Method "`+m+`" not allowed.`)
		}
		// M5 before any setup.
		s.post("/auth/mfa/activate/", map[string]string{"code": "123456"}).detail(t, 401, "Authentication credentials were not provided.")
		for _, body := range []any{nil, map[string]string{"code": "12345"}, map[string]string{"code": "1234567"}} {
			if r := s.post("/auth/mfa/activate/", body, bearer(access)).expect(t, 400); r.fieldMsg("code") == "" {
				t.Fatalf("activate %v: %s", body, r.raw)
			}
		}
		s.post("/auth/mfa/activate/", map[string]string{"code": "123456"}, bearer(access)).detail(t, 400, "Setup not initiated.")
		// M7: nothing yet.
		if r := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200); string(bytes.TrimSpace(r.raw)) != "[]" {
			t.Fatalf("authenticators before setup: %s", r.raw)
		}

		// M2: setup, default issuer, a QR code that scans; repeating it
		// replaces the pending secret.
		first := checkSetup(t, s.post("/auth/mfa/setup/", nil, bearer(access)), "JWT-Allauth", email)
		secret := checkSetup(t, s.post("/auth/mfa/setup/", nil, bearer(access)), "JWT-Allauth", email)
		if secret == first {
			t.Fatal("a second setup returned the same secret")
		}
		// The pending secret is sealed at rest.
		var pending []string
		rows, err := db.Query(`SELECT token FROM tokens WHERE purpose = $1 AND user_id = $2`, purposeSetupSecret, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var tok string
			if err := rows.Scan(&tok); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, tok)
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if len(pending) != 1 {
			t.Fatalf("%d pending secret rows, want 1 (setup replaces)", len(pending))
		}
		assertSealed(t, []byte(pending[0]), secret)

		// M5: the replaced secret's code and a wrong code.
		nextStep(t)
		if totpNow(t, first) != totpNow(t, secret) {
			s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, first)}, bearer(access)).detail(t, 400, "Invalid code.")
		}
		s.post("/auth/mfa/activate/", map[string]string{"code": wrongCode(t, secret)}, bearer(access)).detail(t, 400, "Invalid code.")

		// M6: activation with the current code.
		activation := totpNow(t, secret)
		r = s.post("/auth/mfa/activate/", map[string]string{"code": " " + activation + " "}, bearer(access)).expect(t, 200).noSession(t)
		if r.body["success"] != true || len(r.body) != 2 {
			t.Fatalf("activate: %s", r.raw)
		}
		codes := recoveryCodes(t, r)
		s.post("/auth/mfa/activate/", map[string]string{"code": activation}, bearer(access)).detail(t, 400, "Setup not initiated.")
		r = s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200)
		var types []string
		for _, v := range r.list {
			a, _ := v.(map[string]any)
			if _, ok := a["id"].(float64); !ok || a["created_at"] == nil {
				t.Fatalf("authenticator fields: %s", r.raw)
			}
			if _, ok := a["last_used_at"]; !ok {
				t.Fatalf("authenticator without last_used_at: %s", r.raw)
			}
			types = append(types, a["type"].(string))
		}
		sort.Strings(types)
		if strings.Join(types, ",") != "recovery_codes,totp" {
			t.Fatalf("authenticator types %v", types)
		}
		// Recovery codes are shown once: the listing does not repeat them.
		for _, c := range codes {
			if bytes.Contains(r.raw, []byte(c)) || bytes.Contains(r.raw, []byte(strings.ReplaceAll(c, "-", ""))) {
				t.Fatalf("authenticators list a recovery code: %s", r.raw)
			}
		}
		// M7: only the caller's are listed.
		mustCreateUser(t, "other@world.com", mfaPass, 0)
		otherAccess, _ := s.login("other@world.com", mfaPass)
		if r := s.get("/auth/mfa/authenticators/", bearer(otherAccess)).expect(t, 200); len(r.list) != 0 {
			t.Fatalf("another user's authenticators: %s", r.raw)
		}

		// The TOTP secret is sealed in the authenticator row, the pending
		// row is gone, and the recovery codes are stored only as hashes.
		var data []byte
		if err := db.QueryRow(`SELECT data FROM authenticators WHERE user_id = $1 AND type = 'totp'`, u.ID).Scan(&data); err != nil {
			t.Fatal(err)
		}
		assertSealed(t, data, secret)
		if n, err := activeStore(t).UserTokens(ctx, u.ID, purposeSetupSecret, time.Time{}); err != nil || len(n) != 0 {
			t.Fatalf("pending secret after activation: %v %v", n, err)
		}
		assertHashedRecovery(t, db, u.ID, codes)

		// M4.
		s.post("/auth/mfa/setup/", nil, bearer(access)).detail(t, 400, "TOTP already activated.")

		// M9: login now answers a challenge.
		ch := s.challenge(email)
		// M11: the activation code is spent for its step.
		s.verify(ch, activation).detail(t, 400, "Invalid code.")
		r = s.post("/auth/mfa/verify/", map[string]string{"code": "123456"}).expect(t, 400)
		if r.fieldMsg("challenge_id") != "This field is required." || r.body["code"] != nil {
			t.Fatalf("verify without challenge: %s", r.raw)
		}
		if r := s.post("/auth/mfa/verify/", map[string]string{"challenge_id": ch}).expect(t, 400); r.fieldMsg("code") != "This field is required." {
			t.Fatalf("verify without code: %s", r.raw)
		}
		if r := s.verify(ch, "12345").expect(t, 400); r.fieldMsg("code") == "" {
			t.Fatalf("verify with 5 digits: %s", r.raw)
		}
		s.verify(randomHex(t, 16), totpNow(t, secret)).detail(t, 400, "Challenge expired or invalid.")
		s.verify(ch, wrongCode(t, secret)).detail(t, 400, "Invalid code.")
		nextStep(t)
		good := totpNow(t, secret)
		access2, refresh := s.verify(ch, good).session(t, false)
		if claims(t, access2)["user_id"] != strconv.FormatInt(u.ID, 10) {
			t.Fatalf("verify issued a token for %v", claims(t, access2)["user_id"])
		}
		s.get("/auth/user/", bearer(access2)).expect(t, 200)
		s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
		s.verify(ch, good).detail(t, 400, "Challenge expired or invalid.")
		// M11: the same code on a fresh challenge in the same step.
		s.verify(s.challenge(email), good).detail(t, 400, "Invalid code.")

		// M10: recovery codes.
		ch = s.challenge(email)
		r = s.post("/auth/mfa/verify-recovery/", nil).expect(t, 400)
		if r.fieldMsg("challenge_id") == "" || r.fieldMsg("recovery_code") == "" {
			t.Fatalf("verify-recovery without fields: %s", r.raw)
		}
		s.verifyRecovery(randomHex(t, 16), codes[0]).detail(t, 400, "Challenge expired or invalid.")
		s.verifyRecovery(ch, "0000-0000-0000-0000").detail(t, 400, "Invalid recovery code.")
		s.verifyRecovery(ch, "not a code").detail(t, 400, "Invalid recovery code.")
		s.verifyRecovery(ch, codes[0]).session(t, false)
		s.verifyRecovery(ch, codes[1]).detail(t, 400, "Challenge expired or invalid.")
		s.verifyRecovery(s.challenge(email), codes[0]).detail(t, 400, "Invalid recovery code.")
		// A code typed in lower case without hyphens is the same code.
		typed := strings.ToLower(strings.ReplaceAll(codes[1], "-", ""))
		s.verifyRecovery(s.challenge(email), typed).session(t, false)
		if n, err := activeStore(t).CountRecoveryCodes(ctx, u.ID); err != nil || n != 8 {
			t.Fatalf("%d recovery codes left, want 8 (%v)", n, err)
		}

		// A challenge outlived by its authenticator: TOTP not activated,
		// and no recovery codes either.
		ch = s.challenge(email)
		s.post("/auth/mfa/deactivate/", map[string]string{"password": mfaPass}, bearer(access2)).expect(t, 200)
		s.verify(ch, totpAt(t, secret, 1)).detail(t, 400, "TOTP not activated.")
		s.verifyRecovery(ch, codes[2]).detail(t, 400, "Recovery codes not available.")
		s.post("/auth/mfa/deactivate/", nil).expect(t, 401)
		// Body mode: verify hands the refresh token in the body (the
		// whole of /auth/ shares one realm, so reload to switch).
		s.reload(caddyfile(store, mfaOptions("optional", "refresh_token body"), defaultBody))
		access, _ = s.loginBody(email)
		en := s.enrol(access)
		nextStep(t)
		a, rt := s.verify(s.challenge(email), totpNow(t, en.secret)).session(t, true)
		if claims(t, a)["session"] != claims(t, rt)["session"] {
			t.Fatal("access and refresh of different sessions")
		}
		s.verifyRecovery(s.challenge(email), en.recovery[9]).session(t, true)
	})
}

// loginBody logs in in body mode.
func (s *site) loginBody(email string) (access, refresh string) {
	s.t.Helper()
	return s.post("/auth/login/", map[string]string{"email": email, "password": mfaPass}).session(s.t, true)
}

// assertSealed fails unless stored holds secret neither as text nor as its
// raw bytes (base64 of them either).
func assertSealed(t *testing.T, stored []byte, secret string) {
	t.Helper()
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	forms := [][]byte{[]byte(secret), []byte(strings.ToLower(secret)), raw, []byte(base64.StdEncoding.EncodeToString(raw))}
	views := [][]byte{stored}
	if dec, err := base64.StdEncoding.DecodeString(string(stored)); err == nil {
		views = append(views, dec)
	}
	for _, v := range views {
		for _, f := range forms {
			if bytes.Contains(v, f) {
				t.Fatalf("the TOTP secret is readable in the stored row %q", stored)
			}
		}
	}
	if len(stored) < len(raw) {
		t.Fatalf("stored secret too short to hold it: %q", stored)
	}
}

// assertHashedRecovery fails unless the recovery_codes table holds one
// row per code and none of them in plain text.
func assertHashedRecovery(t *testing.T, db *sql.DB, userID int64, codes []string) {
	t.Helper()
	rows, err := db.Query(`SELECT code_hash FROM recovery_codes WHERE user_id = $1`, userID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		n++
		for _, c := range codes {
			bare := strings.ReplaceAll(c, "-", "")
			if strings.Contains(strings.ToUpper(h), bare) || strings.Contains(h, c) {
				t.Fatalf("recovery code %s stored in plain text: %q", c, h)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(codes) {
		t.Fatalf("%d stored recovery codes, want %d", n, len(codes))
	}
}

// TestMFARequiredBootstrapE2E is the reference's required-mode scenario Q1–Q4 (and the spec's
// required-mode flow), with the refresh token in the cookie and in the body.
func TestMFARequiredBootstrapE2E(t *testing.T) {
	for _, mode := range []string{"cookie", "body"} {
		t.Run(mode, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, store string) {
				bodyMode := mode == "body"
				s := startCaddy(t, caddyfile(store, mfaOptions("required", "refresh_token "+mode), defaultBody))
				const email = "required@world.com"
				u := mustCreateUser(t, email, mfaPass, 0)

				// Q1: bootstrap, no tokens, no session row.
				id := s.bootstrap(email)
				if n := sessions(t, u.ID); n != 0 {
					t.Fatalf("%d sessions after the bootstrap", n)
				}
				// Q2: setup with the challenge and no bearer.
				s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": randomHex(t, 16)}).detail(t, 401, "Authentication credentials were not provided.")
				checkSetup(t, s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}), "JWT-Allauth", email)
				// Setup does not spend the challenge; a second one replaces the secret.
				secret := checkSetup(t, s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}), "JWT-Allauth", email)
				s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret)}).detail(t, 401, "Authentication credentials were not provided.")
				s.post("/auth/mfa/activate/", map[string]string{"code": wrongCode(t, secret), "setup_challenge_id": id}).detail(t, 400, "Invalid code.")
				activation := totpNow(t, secret)
				r := s.post("/auth/mfa/activate/", map[string]string{"code": activation, "setup_challenge_id": id})
				access, refresh := r.session(t, bodyMode)
				if r.body["success"] != true || r.body["detail"] != nil {
					t.Fatalf("bootstrap activation: %s", r.raw)
				}
				recovery := recoveryCodes(t, r)
				if claims(t, access)["user_id"] != strconv.FormatInt(u.ID, 10) || claims(t, refresh)["session"] != claims(t, access)["session"] {
					t.Fatalf("bootstrap tokens: %v / %v", claims(t, access), claims(t, refresh))
				}
				if n := sessions(t, u.ID); n != 1 {
					t.Fatalf("%d sessions after activation, want 1", n)
				}
				s.get("/auth/user/", bearer(access)).expect(t, 200)
				if bodyMode {
					s.post("/auth/refresh/", map[string]string{"refresh": refresh}).expect(t, 200)
				} else {
					s.post("/auth/refresh/", nil, refreshCookie(refresh)).expect(t, 200)
				}
				// The setup challenge is spent.
				s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).detail(t, 401, "Authentication credentials were not provided.")

				// Q3: the next login is a normal challenge; the activation
				// code is spent for its step.
				ch := s.challenge(email)
				s.verify(ch, activation).detail(t, 400, "Invalid code.")
				nextStep(t)
				access, _ = s.verify(ch, totpNow(t, secret)).session(t, bodyMode)
				s.verifyRecovery(s.challenge(email), recovery[3]).session(t, bodyMode)

				// Q4.
				for _, pw := range []string{mfaPass, "wrong"} {
					s.post("/auth/mfa/deactivate/", map[string]string{"password": pw}, bearer(access)).detail(t, 403, "MFA TOTP is required and cannot be disabled.")
				}
				if r := s.get("/auth/mfa/authenticators/", bearer(access)).expect(t, 200); len(r.list) == 0 {
					t.Fatalf("authenticators: %s", r.raw)
				}
				s.post("/auth/mfa/setup/", nil, bearer(access)).detail(t, 400, "TOTP already activated.")
			})
		})
	}
}

// TestMFAIssuerE2E checks the issuer priority: totp_issuer when set
// non-empty, "JWT-Allauth" when absent, and when set to "" the site name,
// else the request host.
func TestMFAIssuerE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := func(extra ...string) string { return caddyfile(store, mfaOptions("optional", extra...), defaultBody) }
		s := startCaddy(t, cf(`totp_issuer "Acme Corp"`))
		const email = "issuer+test@world.com"
		mustCreateUser(t, email, mfaPass, 0)
		for _, c := range []struct {
			options []string
			issuer  string
		}{
			{[]string{`totp_issuer "Acme Corp"`, `site_name "My Site"`}, "Acme Corp"},
			{nil, "JWT-Allauth"},
			{[]string{`site_name "My Site"`}, "JWT-Allauth"},
			{[]string{`totp_issuer ""`, `site_name "My Site"`}, "My Site"},
			{[]string{`totp_issuer ""`}, "127.0.0.1"},
		} {
			s.reload(cf(c.options...))
			access, _ := s.login(email, mfaPass)
			checkSetup(t, s.post("/auth/mfa/setup/", nil, bearer(access)), c.issuer, email)
		}
	})
}

// TestMFAExpiryE2E: challenges and the pending secret live
// mfa_challenge_ttl from their creation, on the realm's clock.
func TestMFAExpiryE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		const ttl = 5 * time.Minute
		// The pending secret's case below spends ten minutes of one
		// session; reauth_window has tests of its own.
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", "reauth_window 30m"), defaultBody))
		const email = "expiry@world.com"
		_, en := s.enrolledUser(email)

		// Login challenge.
		nextStep(t)
		ch := s.challenge(email)
		advance(t, ttl-time.Second)
		s.verify(ch, totpNow(t, en.secret)).session(t, false)
		nextStep(t)
		ch = s.challenge(email)
		advance(t, ttl+time.Second)
		s.verify(ch, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		ch = s.challenge(email)
		advance(t, ttl+time.Second)
		s.verifyRecovery(ch, en.recovery[0]).detail(t, 400, "Challenge expired or invalid.")

		// Pending secret.
		mustCreateUser(t, "pending@world.com", mfaPass, 0)
		access, _ := s.login("pending@world.com", mfaPass)
		secret := s.post("/auth/mfa/setup/", nil, bearer(access)).expect(t, 200).str("secret")
		advance(t, ttl+time.Second)
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret)}, bearer(access)).detail(t, 400, "Setup not initiated.")
		secret = s.post("/auth/mfa/setup/", nil, bearer(access)).expect(t, 200).str("secret")
		advance(t, ttl-time.Second)
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret)}, bearer(access)).expect(t, 200)

		// Setup challenge (required mode): TTL from creation, not
		// extended by /mfa/setup/.
		s.reload(caddyfile(store, mfaOptions("required"), defaultBody))
		const boot = "boot@world.com"
		mustCreateUser(t, boot, mfaPass, 0)
		id := s.bootstrap(boot)
		advance(t, ttl+time.Second)
		s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).detail(t, 401, "Authentication credentials were not provided.")
		id = s.bootstrap(boot)
		advance(t, 2*time.Minute)
		secret = s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200).str("secret")
		advance(t, ttl-2*time.Minute+time.Second)
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret), "setup_challenge_id": id}).detail(t, 401, "Authentication credentials were not provided.")
		id = s.bootstrap(boot)
		advance(t, ttl-time.Second)
		secret = s.post("/auth/mfa/setup/", map[string]string{"setup_challenge_id": id}).expect(t, 200).str("secret")
		s.post("/auth/mfa/activate/", map[string]string{"code": totpNow(t, secret), "setup_challenge_id": id}).session(t, false)

		// mfa_challenge_ttl is configurable.
		s.reload(caddyfile(store, mfaOptions("optional", "mfa_challenge_ttl 1m"), defaultBody))
		nextStep(t)
		ch = s.challenge(email)
		advance(t, time.Minute+time.Second)
		s.verify(ch, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		ch = s.challenge(email)
		advance(t, time.Minute-time.Second)
		s.verify(ch, totpNow(t, en.secret)).session(t, false)
	})
}

// lockedOut checks a verify endpoint's 429: the exact message and a
// Retry-After within [lo, hi]; it returns the wait.
func (r reply) lockedOut(t *testing.T, lo, hi int) int {
	t.Helper()
	r.detail(t, 429, "Too many failed MFA attempts. Try again later.")
	wait, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || wait < lo || wait > hi {
		t.Fatalf("Retry-After %q, want %d..%d", r.header.Get("Retry-After"), lo, hi)
	}
	return wait
}

// loginLockedOut checks that /login/ refuses a locked-out user with 429,
// the throttle wording and Retry-After within [lo, hi].
func (s *site) loginLockedOut(email string, lo, hi int) int {
	s.t.Helper()
	t := s.t
	r := s.post("/auth/login/", map[string]string{"email": email, "password": mfaPass}).expect(t, 429).noSession(t)
	m := retryAfterText.FindStringSubmatch(r.str("detail"))
	if m == nil || r.body["challenge_id"] != nil || m[1] != r.header.Get("Retry-After") {
		t.Fatalf("login while locked out: %s, Retry-After %q", r.raw, r.header.Get("Retry-After"))
	}
	wait, _ := strconv.Atoi(m[1])
	if wait < lo || wait > hi {
		t.Fatalf("login Retry-After %d, want %d..%d", wait, lo, hi)
	}
	return wait
}

// TestMFABruteForceWorkedExampleE2E walks the reference's worked
// example with the default limits (5 per challenge, 10 per user in 15
// minutes) to the 429 and past its end.
func TestMFABruteForceWorkedExampleE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional"), defaultBody))
		const email = "brute@world.com"
		u, en := s.enrolledUser(email)
		nextStep(t)
		bad := wrongCode(t, en.secret)

		a := s.challenge(email)
		for i := 1; i <= 4; i++ {
			s.verify(a, bad).detail(t, 400, "Invalid code.")
		}
		s.verify(a, bad).detail(t, 400, "Too many failed attempts. Challenge invalidated.")
		s.verify(a, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		b := s.challenge(email)
		spare := s.challenge(email)
		for i := 6; i <= 9; i++ {
			s.verify(b, bad).detail(t, 400, "Invalid code.")
		}
		wait := s.verify(b, bad).lockedOut(t, 880, 900)
		if n := attempts(t, u.ID); n != 10 {
			t.Fatalf("%d failure records, want 10", n)
		}
		// Every live challenge died with the lockout; login answers 429.
		s.verify(b, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		s.verify(spare, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		s.loginLockedOut(email, wait-15, wait)
		// Until the oldest failure leaves the window.
		advance(t, time.Duration(wait-10)*time.Second)
		s.loginLockedOut(email, 1, 10)
		advance(t, 11*time.Second)
		ch := s.challenge(email)
		s.verify(ch, totpNow(t, en.secret)).session(t, false)
		if n := attempts(t, u.ID); n != 0 {
			t.Fatalf("%d failure records after a success, want 0", n)
		}
	})
}

// TestMFABruteForceSmallLimitsE2E is the reference's brute-force scenario F1–F10 with limits
// 2 per challenge and 3 per user in 600 s, set in the Caddyfile.
func TestMFABruteForceSmallLimitsE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		limits := []string{"mfa_challenge_max_attempts 2", "mfa_max_attempts 3", "mfa_lockout 600s"}
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", limits...), defaultBody))
		const email = "small@world.com"
		u, en := s.enrolledUser(email)
		nextStep(t)
		bad := wrongCode(t, en.secret)

		// F1.
		a := s.challenge(email)
		s.verify(a, bad).detail(t, 400, "Invalid code.")
		s.verify(a, bad).detail(t, 400, "Too many failed attempts. Challenge invalidated.")
		s.verify(a, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		// F2, F3.
		spare := s.challenge(email)
		b := s.challenge(email)
		s.verify(b, bad).lockedOut(t, 580, 600)
		if n := attempts(t, u.ID); n != 3 {
			t.Fatalf("%d failure records, want 3", n)
		}
		s.verify(b, totpNow(t, en.secret)).detail(t, 400, "Challenge expired or invalid.")
		s.verifyRecovery(spare, en.recovery[0]).detail(t, 400, "Challenge expired or invalid.")
		// F4.
		s.loginLockedOut(email, 580, 600)
		// F5: a live challenge with a correct code or a valid recovery
		// code is refused without looking at the code.
		advance(t, 5*time.Second)
		fresh := mintChallenge(t, u.ID)
		s.verify(fresh, totpNow(t, en.secret)).lockedOut(t, 575, 595)
		s.verifyRecovery(fresh, en.recovery[0]).lockedOut(t, 575, 595)
		// F6.
		advance(t, 601*time.Second)
		s.verify(s.challenge(email), totpNow(t, en.secret)).session(t, false)
		// The recovery code refused during the lockout was not spent.
		s.verifyRecovery(s.challenge(email), en.recovery[0]).session(t, false)
		if n := attempts(t, u.ID); n != 0 {
			t.Fatalf("%d failure records after success", n)
		}

		// F7: TOTP and recovery codes share one budget.
		nextStep(t)
		bad = wrongCode(t, en.secret)
		a = s.challenge(email)
		s.verify(a, bad).detail(t, 400, "Invalid code.")
		s.verify(a, bad).detail(t, 400, "Too many failed attempts. Challenge invalidated.")
		s.verifyRecovery(s.challenge(email), "AAAA-BBBB-CCCC-DDDD").lockedOut(t, 580, 600)
		advance(t, 601*time.Second)

		// F8: one failure, then a success resets the count.
		nextStep(t)
		a = s.challenge(email)
		s.verify(a, wrongCode(t, en.secret)).detail(t, 400, "Invalid code.")
		if n := attempts(t, u.ID); n != 1 {
			t.Fatalf("%d failure records, want 1", n)
		}
		s.verify(a, totpNow(t, en.secret)).session(t, false)
		if n := attempts(t, u.ID); n != 0 {
			t.Fatalf("%d failure records after success, want 0", n)
		}

		// F10: failures older than the window are purged when the next
		// one is recorded, and do not count towards the lockout.
		nextStep(t)
		bad = wrongCode(t, en.secret)
		s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
		s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
		advance(t, 601*time.Second)
		nextStep(t)
		bad = wrongCode(t, en.secret)
		s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
		if n := attempts(t, u.ID); n != 1 {
			t.Fatalf("%d failure records, want 1 (older ones purged)", n)
		}
		s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
		s.verify(s.challenge(email), bad).lockedOut(t, 580, 600)
		advance(t, 601*time.Second)

		// F9: mfa_max_attempts 0 never locks out.
		s.reload(caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 2", "mfa_max_attempts 0", "mfa_lockout 600s"), defaultBody))
		nextStep(t)
		bad = wrongCode(t, en.secret)
		for i := 0; i < 6; i++ {
			s.verify(s.challenge(email), bad).detail(t, 400, "Invalid code.")
		}
		s.verify(s.challenge(email), totpNow(t, en.secret)).session(t, false)
		// mfa_challenge_max_attempts 0 never invalidates a challenge.
		s.reload(caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 0", "mfa_max_attempts 0"), defaultBody))
		nextStep(t)
		bad = wrongCode(t, en.secret)
		a = s.challenge(email)
		for i := 0; i < 7; i++ {
			s.verify(a, bad).detail(t, 400, "Invalid code.")
		}
		s.verify(a, totpNow(t, en.secret)).session(t, false)
	})
}

// TestMFATOTPWindowAndReplayE2E is DESIGN decision 3: one step of drift
// either side, each step accepted once per user and only forwards, also
// across a reload and a full restart (the state is in the database).
func TestMFATOTPWindowAndReplayE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		cf := caddyfile(store, mfaOptions("optional"), defaultBody)
		s := startCaddy(t, cf)
		const email = "replay@world.com"
		_, en := s.enrolledUser(email)
		// Three steps past the activation, so the step two before now
		// is newer than the last accepted one: refused for the window
		// alone.
		nextStep(t)
		nextStep(t)
		nextStep(t)

		ch := s.challenge(email)
		s.verify(ch, totpAt(t, en.secret, -2)).detail(t, 400, "Invalid code.")
		s.verify(ch, totpAt(t, en.secret, 2)).detail(t, 400, "Invalid code.")
		s.verify(ch, totpAt(t, en.secret, -1)).session(t, false)
		// The same code on a second challenge in the same step.
		s.verify(s.challenge(email), totpAt(t, en.secret, -1)).detail(t, 400, "Invalid code.")
		// The next step's code is accepted...
		s.verify(s.challenge(email), totpAt(t, en.secret, 1)).session(t, false)
		// ... and then the current step's, older, is refused.
		ch = s.challenge(email)
		s.verify(ch, totpNow(t, en.secret)).detail(t, 400, "Invalid code.")

		// After a reload (a new realm: another node on the same store),
		// the challenge is still there and both replays are still refused.
		s.reload(caddyfile(store, mfaOptions("optional", `site_name "Node B"`), defaultBody))
		s.verify(ch, totpNow(t, en.secret)).detail(t, 400, "Invalid code.")
		s.verify(ch, totpAt(t, en.secret, 1)).detail(t, 400, "Invalid code.")
		nextStep(t)
		nextStep(t)
		s.verify(ch, totpNow(t, en.secret)).session(t, false)

		// After a full restart: the activation code of a fresh enrolment,
		// a code accepted before the restart, and an older step.
		mustCreateUser(t, "fresh@world.com", mfaPass, 0)
		access, _ := s.login("fresh@world.com", mfaPass)
		setup := s.post("/auth/mfa/setup/", nil, bearer(access)).expect(t, 200)
		secret := setup.str("secret")
		s.restart(cf) // the pending secret survives
		activation := totpNow(t, secret)
		s.post("/auth/mfa/activate/", map[string]string{"code": activation}, bearer(access)).expect(t, 200)
		s.restart(cf)
		s.verify(s.challenge("fresh@world.com"), activation).detail(t, 400, "Invalid code.")
		nextStep(t)
		accepted := totpAt(t, en.secret, 1)
		s.verify(s.challenge(email), accepted).session(t, false)
		ch = s.challenge(email)
		s.restart(cf)
		s.verify(ch, accepted).detail(t, 400, "Invalid code.")
		s.verify(ch, totpNow(t, en.secret)).detail(t, 400, "Invalid code.")
		nextStep(t)
		nextStep(t)
		s.verify(ch, totpNow(t, en.secret)).session(t, false)

		// totp_skew 0: only the current step.
		s.reload(caddyfile(store, mfaOptions("optional", "totp_skew 0"), defaultBody))
		nextStep(t)
		nextStep(t)
		ch = s.challenge(email)
		s.verify(ch, totpAt(t, en.secret, -1)).detail(t, 400, "Invalid code.")
		s.verify(ch, totpAt(t, en.secret, 1)).detail(t, 400, "Invalid code.")
		s.verify(ch, totpNow(t, en.secret)).session(t, false)
	})
}

// TestMFARecoveryRegenerateE2E: POST /mfa/recovery-codes/regenerate/ with
// the bearer and a current code replaces the set; the old set is dead.
func TestMFARecoveryRegenerateE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 1"), defaultBody))
		const email = "regen@world.com"
		u, en := s.enrolledUser(email)
		nextStep(t)
		access, _ := s.verify(s.challenge(email), totpNow(t, en.secret)).session(t, false)
		const path = "/auth/mfa/recovery-codes/regenerate/"

		nextStep(t)
		code := totpNow(t, en.secret)
		s.post(path, map[string]string{"code": code}).detail(t, 401, "Authentication credentials were not provided.")
		if r := s.post(path, nil, bearer(access)).expect(t, 400); r.fieldMsg("code") == "" {
			t.Fatalf("regenerate without code: %s", r.raw)
		}
		// A wrong code is a plain failure (there is no challenge to
		// invalidate, whatever mfa_challenge_max_attempts says).
		s.post(path, map[string]string{"code": wrongCode(t, en.secret)}, bearer(access)).detail(t, 400, "Invalid code.")
		if n := attempts(t, u.ID); n != 1 {
			t.Fatalf("%d failure records after a wrong regenerate code, want 1", n)
		}
		r := s.post(path, map[string]string{"code": code}, bearer(access)).expect(t, 200)
		fresh := recoveryCodes(t, r)
		assertHashedRecovery(t, storeDB(t), u.ID, fresh)
		s.reload(caddyfile(store, mfaOptions("optional"), defaultBody))
		// The regenerate code is spent for its step, here and at verify.
		s.post(path, map[string]string{"code": code}, bearer(access)).detail(t, 400, "Invalid code.")
		s.verify(s.challenge(email), code).detail(t, 400, "Invalid code.")
		// The old set is dead, the new one works.
		s.verifyRecovery(s.challenge(email), en.recovery[0]).detail(t, 400, "Invalid recovery code.")
		s.verifyRecovery(s.challenge(email), fresh[0]).session(t, false)
		s.verifyRecovery(s.challenge(email), fresh[0]).detail(t, 400, "Invalid recovery code.")
		// Without TOTP there is nothing to regenerate from.
		mustCreateUser(t, "nototp@world.com", mfaPass, 0)
		other, _ := s.login("nototp@world.com", mfaPass)
		s.post(path, map[string]string{"code": "123456"}, bearer(other)).detail(t, 400, "TOTP not activated.")
	})
}

// TestMFAInactiveAccountE2E: an account disabled between the password and
// the second factor gets no session (the reference does not re-check,
// the reference does otherwise), and nothing is spent by the refusal.
func TestMFAInactiveAccountE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional"), defaultBody))
		const email = "inactive@world.com"
		u, en := s.enrolledUser(email)
		nextStep(t)
		ch := s.challenge(email)
		if err := activeStore(t).SetActive(context.Background(), u.ID, false); err != nil {
			t.Fatal(err)
		}
		code := totpNow(t, en.secret)
		const inactive = "No active account found with the given credentials"
		s.verify(ch, code).detail(t, 401, inactive).noSession(t)
		s.verifyRecovery(ch, en.recovery[0]).detail(t, 401, inactive).noSession(t)
		if n := sessions(t, u.ID); n != 1 {
			t.Fatalf("%d sessions, want only the enrolment login's", n)
		}
		if err := activeStore(t).SetActive(context.Background(), u.ID, true); err != nil {
			t.Fatal(err)
		}
		// The challenge, the code's step and the recovery code are intact.
		s.verify(ch, code).session(t, false)
		s.verifyRecovery(s.challenge(email), en.recovery[0]).session(t, false)
	})
}

// TestMFARacesE2E: a challenge, a TOTP step and a recovery code are each
// spent exactly once under 50 concurrent uses (run with -race).
func TestMFARacesE2E(t *testing.T) {
	eachBackend(t, func(t *testing.T, store string) {
		s := startCaddy(t, caddyfile(store, mfaOptions("optional", "mfa_challenge_max_attempts 0", "mfa_max_attempts 0"), defaultBody))
		const email = "race@world.com"
		u, en := s.enrolledUser(email)
		const n = 50

		// race sends n requests at once and returns how many opened a
		// session; every other answer must be a 400 with one of allowed.
		race := func(send func(i int) reply, allowed ...string) int {
			t.Helper()
			wins := 0
			for _, r := range burst(n, send) {
				if r.status == 200 && r.str("access") != "" {
					wins++
					continue
				}
				if r.status != 400 || !contains(allowed, r.str("detail")) {
					t.Errorf("status %d body %s, want 200 or 400 %q", r.status, r.raw, allowed)
				}
			}
			return wins
		}
		before := sessions(t, u.ID)
		// One challenge, one correct code.
		nextStep(t)
		ch := s.challenge(email)
		code := totpNow(t, en.secret)
		if w := race(func(int) reply { return s.verify(ch, code) }, "Challenge expired or invalid."); w != 1 {
			t.Fatalf("%d sessions from one challenge, want 1", w)
		}
		if got := sessions(t, u.ID); got != before+1 {
			t.Fatalf("%d new session rows, want 1", got-before)
		}
		// Fifty challenges, one code of a new step.
		nextStep(t)
		ids := make([]string, n)
		for i := range ids {
			ids[i] = mintChallenge(t, u.ID)
		}
		code = totpNow(t, en.secret)
		if w := race(func(i int) reply { return s.verify(ids[i], code) }, "Invalid code."); w != 1 {
			t.Fatalf("%d sessions from one TOTP code, want 1", w)
		}
		// One challenge, one recovery code.
		ch = s.challenge(email)
		if w := race(func(int) reply { return s.verifyRecovery(ch, en.recovery[0]) }, "Challenge expired or invalid."); w != 1 {
			t.Fatalf("%d sessions from one recovery challenge, want 1", w)
		}
		// Fifty challenges, one recovery code.
		for i := range ids {
			ids[i] = mintChallenge(t, u.ID)
		}
		if w := race(func(i int) reply { return s.verifyRecovery(ids[i], en.recovery[1]) }, "Invalid recovery code."); w != 1 {
			t.Fatalf("%d sessions from one recovery code, want 1", w)
		}
		if left, err := activeStore(t).CountRecoveryCodes(context.Background(), u.ID); err != nil || left != 8 {
			t.Fatalf("%d recovery codes left, want 8 (%v)", left, err)
		}
		if got := sessions(t, u.ID); got != before+4 {
			t.Fatalf("%d new session rows, want 4", got-before)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
