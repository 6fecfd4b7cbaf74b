package passwords

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

func TestArgon2idRoundTrip(t *testing.T) {
	r := testrand.New(9)
	enc, err := Hash("correct horse battery staple", r)
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(enc) {
		t.Fatalf("not a PHC string with the current parameters: %s", enc)
	}
	if ok, rehash := Verify("correct horse battery staple", enc); !ok || rehash {
		t.Fatalf("ok=%v rehash=%v", ok, rehash)
	}
	if ok, _ := Verify("correct horse battery stapl", enc); ok {
		t.Fatal("wrong password accepted")
	}
	if ok, _ := Verify("", enc); ok {
		t.Fatal("empty password accepted")
	}
	again, _ := Hash("correct horse battery staple", r)
	if again == enc {
		t.Fatal("two hashes share a salt")
	}
	// Non-ASCII passwords are hashed as their UTF-8 bytes, untruncated.
	long := strings.Repeat("ü", 128)
	enc, _ = Hash(long, r)
	if ok, _ := Verify(long, enc); !ok {
		t.Fatal("long password")
	}
	if ok, _ := Verify(long[:len(long)-2], enc); ok {
		t.Fatal("prefix of a long password accepted")
	}
}

func TestArgon2idKnownVector(t *testing.T) {
	// Made with argon2.IDKey directly, so a change in our encoding is caught.
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 2, 19456, 1, 32)
	enc := "$argon2id$v=19$m=19456,t=2,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key)
	if got := formatArgon2id(argon2Params{19456, 2, 1}, salt, key); got != enc {
		t.Fatalf("format %s, want %s", got, enc)
	}
	if ok, rehash := Verify("pw", enc); !ok || rehash {
		t.Fatalf("ok=%v rehash=%v", ok, rehash)
	}
}

func TestArgon2idOldParamsNeedRehash(t *testing.T) {
	salt := []byte("saltsaltsaltsalt")
	for _, p := range []argon2Params{{1024, 1, 1}, {19456, 1, 1}, {19456, 2, 2}} {
		key := argon2.IDKey([]byte("pw"), salt, p.time, p.memory, p.threads, 32)
		enc := formatArgon2id(p, salt, key)
		if ok, rehash := Verify("pw", enc); !ok || !rehash {
			t.Errorf("%+v: ok=%v rehash=%v", p, ok, rehash)
		}
		if ok, rehash := Verify("wrong", enc); ok || rehash {
			t.Errorf("%+v wrong password: ok=%v rehash=%v", p, ok, rehash)
		}
	}
	// A 12-byte salt or 16-byte key with current costs is upgraded too.
	key := argon2.IDKey([]byte("pw"), salt[:12], 2, 19456, 1, 16)
	if ok, rehash := Verify("pw", formatArgon2id(argon2Params{19456, 2, 1}, salt[:12], key)); !ok || !rehash {
		t.Errorf("short salt/key: ok=%v rehash=%v", ok, rehash)
	}
	// Django's Argon2PasswordHasher format: "argon2" + the PHC string.
	key = argon2.IDKey([]byte("pw"), salt, 2, 102400, 8, 32)
	django := "argon2" + formatArgon2id(argon2Params{102400, 2, 8}, salt, key)
	if ok, rehash := Verify("pw", django); !ok || !rehash {
		t.Errorf("django argon2: ok=%v rehash=%v", ok, rehash)
	}
}

func TestBcryptVerify(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("hunter2hunter2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	enc := string(b)
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		e := prefix + enc[4:]
		if ok, rehash := Verify("hunter2hunter2", e); !ok || !rehash {
			t.Errorf("%s: ok=%v rehash=%v", prefix, ok, rehash)
		}
		if ok, _ := Verify("hunter2hunter3", e); ok {
			t.Errorf("%s: wrong password accepted", prefix)
		}
	}
	// Django's BCryptPasswordHasher and BCryptSHA256PasswordHasher.
	if ok, _ := Verify("hunter2hunter2", "bcrypt$"+enc); !ok {
		t.Error("django bcrypt$ form")
	}
	sum := sha256.Sum256([]byte("hunter2hunter2"))
	b, _ = bcrypt.GenerateFromPassword([]byte(hex.EncodeToString(sum[:])), bcrypt.MinCost)
	if ok, rehash := Verify("hunter2hunter2", "bcrypt_sha256$"+string(b)); !ok || !rehash {
		t.Errorf("django bcrypt_sha256$ form: ok=%v rehash=%v", ok, rehash)
	}
	// bcrypt stops at 72 bytes; we never truncate, so 73 bytes whose first
	// 72 are the real password do not match.
	pw72 := strings.Repeat("a", 72)
	b, _ = bcrypt.GenerateFromPassword([]byte(pw72), bcrypt.MinCost)
	if ok, _ := Verify(pw72, string(b)); !ok {
		t.Error("72-byte password")
	}
	if ok, _ := Verify(pw72+"b", string(b)); ok {
		t.Error("73-byte password matched a hash of its first 72 bytes")
	}
}

func TestPBKDF2Verify(t *testing.T) {
	// Computed independently with Python's hashlib.pbkdf2_hmac, in Django's
	// encoding (standard base64 with padding).
	vectors := []struct{ password, encoded string }{
		{"pw", "pbkdf2_sha256$1000$salt$CjglNVXON/XHKmtwP5loFOvyQfIDrxRuk9zesDHFVn4="},
		{"correct horse battery staple", "pbkdf2_sha256$20000$Zm8PeF3x9bQk$O7gwhJUVaZBiwsuEidm4xIR/v5yP6gmsSxnBkcp2FXk="},
		{"pässwörd", "pbkdf2_sha256$1000$abcdefghijklmnopqrstuv$XlUuNstVt/qmnq7gJ253cDpU43aOa56U20+/5Lf4lq0="},
	}
	for _, v := range vectors {
		if ok, rehash := Verify(v.password, v.encoded); !ok || !rehash {
			t.Errorf("%s: ok=%v rehash=%v", v.encoded, ok, rehash)
		}
		if ok, _ := Verify(v.password+"x", v.encoded); ok {
			t.Errorf("%s: wrong password accepted", v.encoded)
		}
	}
}

func TestVerifyUnusableAndMalformed(t *testing.T) {
	for _, enc := range []string{
		"", "!", "!unusable", "plain", "md5$salt$abc",
		"$argon2id$v=16$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaA",
		"$argon2id$v=19$m=1073741824,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ",
		"$argon2id$v=19$m=19456,t=2$c2FsdHNhbHRzYWx0c2FsdA$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ",
		"$argon2id$v=19$m=19456,t=2,p=1$!!$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ",
		"pbkdf2_sha256$999999999$salt$CjglNVXON/XHKmtwP5loFOvyQfIDrxRuk9zesDHFVn4=",
		"pbkdf2_sha256$x$salt$CjglNVXON/XHKmtwP5loFOvyQfIDrxRuk9zesDHFVn4=",
		"pbkdf2_sha256$1000$salt",
		"$2b$04$short",
		"$2b$31$" + strings.Repeat("a", 53),
	} {
		if ok, rehash := Verify("pw", enc); ok || rehash {
			t.Errorf("%q: ok=%v rehash=%v", enc, ok, rehash)
		}
	}
}

func TestDummyHashIsCurrent(t *testing.T) {
	p, salt, key, err := parseArgon2id(dummyHash)
	if err != nil {
		t.Fatal(err)
	}
	if p != (argon2Params{argon2Memory, argon2Time, argon2Threads}) || len(salt) != argon2SaltLen || len(key) != argon2KeyLen {
		t.Fatalf("dummy hash does not cost a current verification: %+v", p)
	}
	VerifyDummy("anything") // costs one verification, never matches
}

func TestValidatePassword(t *testing.T) {
	const email = "jane.doe@example.com"
	cases := []struct {
		password string
		want     []string
	}{
		{"Tr0ub4dor&3x", nil},
		{"short", []string{msgPasswordTooShort}},
		{"1234567", []string{msgPasswordTooShort, msgPasswordNumeric}},
		{"password", []string{msgPasswordTooCommon}},
		{"PassWord1", []string{msgPasswordTooCommon}},
		{" qwerty123 ", []string{msgPasswordTooCommon}},
		{"12345678", []string{msgPasswordTooCommon, msgPasswordNumeric}},
		{"73926150483", []string{msgPasswordNumeric}},
		{"٣٤٥٦٧٨٩٠١", []string{msgPasswordNumeric}},
		{"example1", []string{msgPasswordTooSimilar}},
		{"janedoe1", []string{msgPasswordTooSimilar}},
		{"Jane_Doe_1990", []string{msgPasswordTooSimilar}},
		{"jane.doe@example.co", []string{msgPasswordTooSimilar}},
		{"jane", []string{msgPasswordTooSimilar, msgPasswordTooShort}},
		{strings.Repeat("é", 128), nil},
		{strings.Repeat("é", 7), []string{msgPasswordTooShort}},
		{strings.Repeat("x", 129), []string{msgPasswordTooLong}},
		{strings.Repeat("1", 200), []string{msgPasswordTooLong}},
	}
	for _, c := range cases {
		if got := Validate(c.password, email); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.password, got, c.want)
		}
	}
	// A short local part does not forbid passwords containing it.
	if got := Validate("Tr0ub4dor&3jo", "jo@example.com"); got != nil {
		t.Errorf("short local part: %q", got)
	}
	if got := Validate("Tr0ub4dor&3x", ""); got != nil {
		t.Errorf("no e-mail: %q", got)
	}
}

func TestDjangoSimilarityRule(t *testing.T) {
	// Expected values from Django's rule run with Python's difflib, except
	// where our local-part rule is stricter.
	cases := []struct {
		password, email string
		similar         bool
	}{
		{"jane.doe99", "jane.doe@example.com", true}, // Django: false.
		{"ja.ne99xx", "jane.doe@example.com", false},
		{"example1", "jane.doe@example.com", true},
		{"correct horse battery", "jane.doe@example.com", false},
		{"xj@ex.com", "j@ex.com", true},
		{"Xample.c0m!", "jane.doe@example.com", false},
		{"doedoedoe", "jane.doe@example.com", false},
		{"jd@example", "jd@example.org", true},
	}
	for _, c := range cases {
		if got := tooSimilarToEmail(c.password, c.email); got != c.similar {
			t.Errorf("%q vs %q: got %v", c.password, c.email, got)
		}
	}
}

func TestSimilarityRatioMatchesDifflib(t *testing.T) {
	// SequenceMatcher(a=a, b=b).ratio() computed with Python's difflib.
	cases := []struct {
		a, b string
		want float64
	}{
		{"janedoe1", "jane.doe@example.com", 0.5},
		{"jane.doe@example", "jane.doe@example.com", 0.8888888888888888},
		{"bcde", "abcd", 0.75},
		{"passport", "password", 0.75},
		{"example.com", "qwertyuiop", 0.19047619047619047},
		{"ababababab", "aaaaabbbbb", 0.6},
		{"mumbling", "tumbolia", 0.625},
		{"abcabcxyzabc", "xxx" + strings.Repeat("abc", 70), 0.008888888888888889},
		{"ñandú2024", "ñandú@correo.es", 0.4166666666666667},
		{"zzzzzzzzzzzzzzzzzzzzzzzzzz", "a.b@c.de", 0},
	}
	for _, c := range cases {
		got := similarityRatio([]rune(c.a), []rune(c.b))
		if d := got - c.want; d > 1e-12 || d < -1e-12 {
			t.Errorf("ratio(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestCommonPasswordList(t *testing.T) {
	isCommonPassword("")
	if len(commonPasswords) < 1000 {
		t.Fatalf("only %d common passwords", len(commonPasswords))
	}
	for _, p := range []string{"password", "PASSWORD123", "iloveyou", "1q2w3e4r", "qwertyuiop", "letmein!"} {
		if !isCommonPassword(p) {
			t.Errorf("%q not found", p)
		}
	}
	if isCommonPassword("# Common passwords, one a line, lower-case. Generated by gencommonpasswords.go; do not edit.") {
		t.Error("the header comment is a password")
	}
}

func BenchmarkArgon2idHash(b *testing.B) {
	r := testrand.New(9)
	for b.Loop() {
		if _, err := Hash("correct horse battery staple", r); err != nil {
			b.Fatal(err)
		}
	}
}
