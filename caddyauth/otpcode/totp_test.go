package otpcode

import (
	"bytes"
	"encoding/base32"
	"image"
	"image/color"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/qrcode"
	"github.com/pquerna/otp"

	"github.com/caddy-jwt-allauth/caddy-jwt-allauth/caddyauth/internal/testrand"
)

// rfcSecret is the RFC 6238 Appendix B SHA1 seed "12345678901234567890".
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

func TestRFC6238Vectors(t *testing.T) {
	if rfcSecret != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Fatalf("seed encodes as %s", rfcSecret)
	}
	vectors := []struct {
		unix int64
		step int64
		code string
	}{
		{59, 0x1, "94287082"},
		{1111111109, 0x23523EC, "07081804"},
		{1111111111, 0x23523ED, "14050471"},
		{1234567890, 0x273EF07, "89005924"},
		{2000000000, 0x3F940AA, "69279037"},
		{20000000000, 0x27BC86AA, "65353130"},
	}
	for _, v := range vectors {
		now := time.Unix(v.unix, 0)
		step := totpStep(now)
		if step != v.step {
			t.Errorf("%d: step %x, want %x", v.unix, step, v.step)
		}
		got8, err := hotpCode(rfcSecret, step, otp.DigitsEight)
		if err != nil || got8 != v.code {
			t.Errorf("%d: 8 digits %s (%v), want %s", v.unix, got8, err, v.code)
		}
		want6 := v.code[2:]
		if got6, err := totpCode(rfcSecret, step); err != nil || got6 != want6 {
			t.Errorf("%d: 6 digits %s (%v), want %s", v.unix, got6, err, want6)
		}
		if s, ok := MatchTOTP(rfcSecret, want6, now, 0); !ok || s != v.step {
			t.Errorf("%d: match step %x ok=%v", v.unix, s, ok)
		}
	}
}

func TestRFC4226Vectors(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		if got, err := totpCode(rfcSecret, int64(counter)); err != nil || got != w {
			t.Errorf("counter %d: %s (%v), want %s", counter, got, err, w)
		}
	}
	if _, err := totpCode(rfcSecret, -1); err == nil {
		t.Error("negative counter accepted")
	}
}

func TestMatchTOTPSkew(t *testing.T) {
	secret, err := NewTOTPSecret(testrand.New(5))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_750_000_015, 0) // In the middle of a step.
	cur := totpStep(now)
	code := func(step int64) string {
		c, err := totpCode(secret, step)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, d := range []int64{-1, 0, 1} {
		if s, ok := MatchTOTP(secret, code(cur+d), now, 1); !ok || s != cur+d {
			t.Errorf("offset %d with skew 1: step %d ok=%v", d, s-cur, ok)
		}
	}
	for _, d := range []int64{-2, 2, -3, 3} {
		if c := code(cur + d); c != code(cur-1) && c != code(cur) && c != code(cur+1) {
			if _, ok := MatchTOTP(secret, c, now, 1); ok {
				t.Errorf("offset %d accepted with skew 1", d)
			}
		}
	}
	if s, ok := MatchTOTP(secret, code(cur+2), now, 2); !ok || s != cur+2 {
		t.Errorf("offset 2 with skew 2: %d %v", s-cur, ok)
	}
	if c := code(cur + 1); c != code(cur) {
		if _, ok := MatchTOTP(secret, c, now, 0); ok {
			t.Error("offset 1 accepted with skew 0")
		}
		if _, ok := MatchTOTP(secret, c, now, -5); ok {
			t.Error("negative skew widened the window")
		}
	}
	// The boundary: the last second of a step and the first of the next.
	edge := time.Unix((cur+1)*totpPeriod-1, 0)
	if s, ok := MatchTOTP(secret, code(cur), edge, 0); !ok || s != cur {
		t.Error("last second of the step")
	}
	if s, ok := MatchTOTP(secret, code(cur+1), edge.Add(time.Second), 0); !ok || s != cur+1 {
		t.Error("first second of the next step")
	}
	for _, bad := range []string{"", "12345", "1234567", code(cur) + " ", " " + code(cur), "abcdef"} {
		if _, ok := MatchTOTP(secret, bad, now, 1); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, ok := MatchTOTP("not base32!", "123456", now, 1); ok {
		t.Error("invalid secret matched")
	}
}

func TestTOTPStepBefore1970(t *testing.T) {
	if got := totpStep(time.Unix(-1, 0)); got != -1 {
		t.Errorf("step of -1 s = %d", got)
	}
	if got := totpStep(time.Unix(-30, 0)); got != -1 {
		t.Errorf("step of -30 s = %d", got)
	}
	if got := totpStep(time.Unix(29, 999)); got != 0 {
		t.Errorf("step of 29 s = %d", got)
	}
}

func TestGenerateTOTPSecret(t *testing.T) {
	secret, err := NewTOTPSecret(testrand.New(6))
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) != 32 || strings.ContainsRune(secret, '=') {
		t.Fatalf("secret %q", secret)
	}
	raw, err := totpEncoding.DecodeString(secret)
	want := make([]byte, 20)
	testrand.New(6).Read(want)
	if err != nil || !bytes.Equal(raw, want) {
		t.Fatalf("secret is not the reader's 20 bytes: %x %v", raw, err)
	}
	if _, err := NewTOTPSecret(strings.NewReader("short")); err == nil {
		t.Fatal("short reader accepted")
	}
}

func TestTOTPProvisioningURI(t *testing.T) {
	secret := "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
	got := ProvisioningURI("JWT-Allauth", "jane.doe+mfa@example.com", secret)
	want := "otpauth://totp/JWT-Allauth:jane.doe%2Bmfa%40example.com?secret=" + secret + "&issuer=JWT-Allauth"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	got = ProvisioningURI("My Site & Co", "a b@example.com", secret)
	u, err := url.Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/My Site & Co:a b@example.com" ||
		u.Query().Get("issuer") != "My Site & Co" || u.Query().Get("secret") != secret {
		t.Fatalf("parsed back as %#v from %s", u, got)
	}
	if want := "&issuer=My%20Site%20%26%20Co"; !strings.HasSuffix(got, want) {
		t.Fatalf("issuer parameter of %s: want the suffix %s (spaces as %%20)", got, want)
	}
	if strings.Contains(got, "digits=") || strings.Contains(got, "period=") || strings.Contains(got, "+") {
		t.Fatalf("unexpected parameters in %s", got)
	}
}

var svgRun = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-(\d+)z`)

// rasterise draws the SVG's module grid into a grey image, scale pixels a
// module, reading only what QRSVG writes: the viewBox and the path runs.
func rasterise(t *testing.T, svg string, scale int) image.Image {
	t.Helper()
	vb := regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`).FindStringSubmatch(svg)
	if vb == nil || vb[1] != vb[2] {
		t.Fatalf("no square viewBox in %.100s", svg)
	}
	size, _ := strconv.Atoi(vb[1])
	d := regexp.MustCompile(`<path fill="#000" d="([^"]*)"/>`).FindStringSubmatch(svg)
	if d == nil {
		t.Fatal("no path")
	}
	if rest := svgRun.ReplaceAllString(d[1], ""); rest != "" {
		t.Fatalf("path has commands the test does not understand: %.50s", rest)
	}
	img := image.NewGray(image.Rect(0, 0, size*scale, size*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for _, m := range svgRun.FindAllStringSubmatch(d[1], -1) {
		x, _ := strconv.Atoi(m[1])
		y, _ := strconv.Atoi(m[2])
		n, _ := strconv.Atoi(m[3])
		if m[3] != m[4] || x < qrQuietZone || y < qrQuietZone || x+n > size-qrQuietZone || y >= size-qrQuietZone {
			t.Fatalf("run %s outside the code area", m[0])
		}
		for px := x * scale; px < (x+n)*scale; px++ {
			for py := y * scale; py < (y+1)*scale; py++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	return img
}

func TestQRSVGDecodesToURI(t *testing.T) {
	uri := ProvisioningURI("JWT-Allauth", "jane.doe+mfa@example.com", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
	svg, err := QRSVG(uri)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg"`, `viewBox="0 0 `, `<path `, `</svg>`} {
		if !strings.Contains(svg, want) {
			t.Fatalf("SVG lacks %s", want)
		}
	}
	if strings.Count(svg, "<path") != 1 {
		t.Fatal("more than one path")
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(rasterise(t, svg, 4))
	if err != nil {
		t.Fatal(err)
	}
	res, err := qrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decoding the rendered QR code: %v", err)
	}
	if res.GetText() != uri {
		t.Fatalf("decoded %q, want %q", res.GetText(), uri)
	}
}
