package jsonform

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	for _, c := range []struct {
		ct, body string
		want     error
	}{
		{"application/json", `{"email":"a@b.c"}`, nil},
		{"application/json; charset=utf-8", `{"a":1}`, nil},
		{"", ``, nil},
		{"text/plain", "  \n", nil},
		{"text/plain", `{"email":"a@b.c"}`, ErrMediaType},
		{"application/json", `{"email":`, ErrMalformed},
		{"application/json", `null`, ErrMalformed},
		{"application/json", `[1]`, ErrMalformed},
		{"application/json", `{"a":1}{"b":2}`, ErrTrailing},
	} {
		_, err := Decode([]byte(c.body), c.ct)
		if !errors.Is(err, c.want) {
			t.Errorf("Decode(%q, %q) = %v, want %v", c.ct, c.body, err, c.want)
		}
	}
	_, err := Decode([]byte(`{}`), "text/\xff"+strings.Repeat("x", 200))
	if err == nil || err.Error() != `Unsupported media type "(unprintable)" in request.` {
		t.Fatalf("unprintable media type: %v", err)
	}
}

func TestStringAcceptsNumbers(t *testing.T) {
	f, err := Decode([]byte(`{"code":123456,"bad":true,"nil":null}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Str("code", true, true); got != "123456" {
		t.Fatalf("number: %q", got)
	}
	f.Str("bad", true, true)
	f.Str("nil", false, true)
	errs := f.Errors()
	if errs["bad"][0] != "Not a valid string." || errs["nil"][0] != "This field may not be null." || len(errs) != 2 {
		t.Fatalf("errors: %v", errs)
	}
}

func TestFieldRules(t *testing.T) {
	f, err := Decode([]byte(`{"blank":"  ","nul":"a\u0000b","n":"42","bad":"4x","long":"äääää"}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	f.Str("missing", true, true)
	f.Str("blank", true, true)
	if f.Str("nul", false, false) != "" {
		t.Fatal("a NUL got through")
	}
	if n, ok := f.Integer("n", true); !ok || n != 42 {
		t.Fatalf("integer from a string: %d %v", n, ok)
	}
	f.Integer("bad", true)
	f.MaxLen("long", f.Str("long", false, false), 4)
	want := map[string]string{
		"missing": MsgRequired, "blank": MsgBlank, "nul": "Null characters are not allowed.",
		"bad": "A valid integer is required.", "long": "Ensure this field has no more than 4 characters.",
	}
	errs := f.Errors()
	for name, msg := range want {
		if len(errs[name]) != 1 || errs[name][0] != msg {
			t.Errorf("%s: %v, want %q", name, errs[name], msg)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("errors: %v", errs)
	}
	posted := FromStrings(func(n string) (string, bool) { return map[string]string{"email": " a@b.c "}[n], n == "email" }, "email", "password")
	if !posted.Has("email") || posted.Has("password") || posted.Str("email", true, true) != "a@b.c" {
		t.Fatalf("FromStrings: %v", posted.Errors())
	}
}

// FuzzDecode feeds request bodies and content types to the decoder every
// endpoint uses: it answers one of its errors or a form, never panics, and
// a string it hands out never carries a NUL.
func FuzzDecode(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"email":"a@b.c","password":"x"}`},
		{"application/json; charset=utf-8", `{"email":"a@b.c","email":"d@e.f"}`},
		{"application/json", `{"email":`},
		{"application/json", `{"a":1}{"b":2}`},
		{"application/json", `null`},
		{"application/json", `[1,2,3]`},
		{"application/json", `{"code":123456,"challenge_id":["x"]}`},
		{"application/json", `{"password":"a\u0000b"}`},
		{"application/json", "{\"email\":\"\xff\xfe\"}"},
		{"text/plain", `{"email":"a@b.c"}`},
		{"", ``},
		{"application/json", strings.Repeat("[", 10000)},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		fm, err := Decode(body, ct)
		if err != nil {
			if !errors.Is(err, ErrMediaType) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTrailing) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// The names the body carries (none for an empty body).
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(body, &fields)
		for name := range fields {
			if s := fm.Str(name, true, true); strings.ContainsRune(s, 0) {
				t.Fatalf("field %q handed out a NUL", name)
			}
			fm.Integer(name, false)
		}
		for _, name := range []string{"email", "password", "code", "challenge_id", "refresh"} {
			fm.Str(name, true, false)
		}
		for name, msgs := range fm.Errors() {
			if len(msgs) == 0 {
				t.Fatalf("field %q has an empty message list", name)
			}
		}
	})
}

func TestObject(t *testing.T) {
	f, err := Decode([]byte(`{"credential": {"id": "x", "response": {}}, "name": "n", "list": [1], "none": null}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.Object("credential", true)); got != `{"id": "x", "response": {}}` {
		t.Fatalf("credential %q", got)
	}
	for _, name := range []string{"name", "list", "none", "missing"} {
		if f.Object(name, true) != nil {
			t.Fatalf("%s read as an object", name)
		}
	}
	want := map[string][]string{
		"name":    {`Expected a dictionary of items but got type "str".`},
		"list":    {`Expected a dictionary of items but got type "list".`},
		"none":    {"This field may not be null."},
		"missing": {MsgRequired},
	}
	if got := f.Errors(); !reflect.DeepEqual(got, want) {
		t.Fatalf("errors %v, want %v", got, want)
	}
}

func TestBool(t *testing.T) {
	f, err := Decode([]byte(`{"a": true, "b": false, "c": 1, "d": "0", "e": "Yes", "f": "maybe", "g": 2, "h": null}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]bool{"a": {true, true}, "b": {false, true}, "c": {true, true}, "d": {false, true}, "e": {true, true}, "f": {false, false}, "g": {false, false}, "h": {false, false}, "missing": {false, false}} {
		if v, set := f.Bool(name, false); v != want[0] || set != want[1] {
			t.Errorf("Bool(%s) = %v, %v; want %v", name, v, set, want)
		}
	}
	errs := f.Errors()
	if len(errs) != 2 || errs["f"][0] != MsgInvalidBool || errs["g"][0] != MsgInvalidBool {
		t.Fatalf("errors = %v, want f and g refused", errs)
	}
	f.Bool("missing", true)
	if f.Errors()["missing"][0] != MsgRequired {
		t.Fatalf("a required boolean missing: %v", f.Errors())
	}
}
