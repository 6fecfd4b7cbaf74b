// Package jsonform decodes a JSON request body the way Django REST
// framework's serializers read one: a single object, read field by field,
// with DRF's messages collected per field. It knows nothing of HTTP beyond
// the Content-Type value; the web layer maps its errors to status codes.
package jsonform

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DRF's messages for a missing and a blank field.
const (
	MsgRequired = "This field is required."
	MsgBlank    = "This field may not be blank."
)

// Errors of Decode. Their texts are the API's answers.
var (
	// ErrMediaType: a non-empty body that is not application/json (415).
	ErrMediaType = errors.New("unsupported media type")
	// ErrMalformed: not exactly one JSON object (400).
	ErrMalformed = errors.New("JSON parse error - the body must be one JSON object.")
	// ErrTrailing: data after the object (400).
	ErrTrailing = errors.New("JSON parse error - unexpected data after the JSON object.")
)

// MediaTypeError is ErrMediaType with the offending value, printable and
// bounded, in DRF's wording.
type MediaTypeError struct{ ContentType string }

func (e *MediaTypeError) Error() string {
	return `Unsupported media type "` + e.ContentType + `" in request.`
}

func (e *MediaTypeError) Unwrap() error { return ErrMediaType }

// Form is a decoded body, read field by field. Unknown fields are ignored
// and never applied.
type Form struct {
	fields map[string]json.RawMessage
	errs   map[string][]string
}

func newForm() *Form {
	return &Form{fields: map[string]json.RawMessage{}, errs: map[string][]string{}}
}

// Decode reads body: an empty (or blank) body is an empty object; a
// non-empty one must have the media type application/json and be exactly
// one JSON object with nothing after it.
func Decode(body []byte, contentType string) (*Form, error) {
	f := newForm()
	if len(bytes.TrimSpace(body)) == 0 {
		return f, nil
	}
	if mt, _, _ := mime.ParseMediaType(contentType); mt != "application/json" {
		ct := contentType
		if len(ct) > 100 || !utf8.ValidString(ct) {
			ct = "(unprintable)"
		}
		return nil, &MediaTypeError{ContentType: strings.ToValidUTF8(ct, "")}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&f.fields); err != nil || f.fields == nil {
		return nil, ErrMalformed
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, ErrTrailing
	}
	return f, nil
}

// FromStrings builds a form whose named fields are the given strings, so
// a posted HTML form goes through the same validation as a JSON body.
// get reports a value and whether it was posted at all.
func FromStrings(get func(name string) (string, bool), names ...string) *Form {
	f := newForm()
	for _, name := range names {
		if v, ok := get(name); ok {
			raw, _ := json.Marshal(v)
			f.fields[name] = raw
		}
	}
	return f
}

// Str reads a string field. Surrounding white space is trimmed when trim is
// set (DRF's CharField does it by default). A required field that is
// missing, null or blank records the DRF message.
func (f *Form) Str(name string, required, trim bool) string {
	raw, ok := f.fields[name]
	if !ok {
		if required {
			f.Fail(name, MsgRequired)
		}
		return ""
	}
	if string(raw) == "null" {
		f.Fail(name, "This field may not be null.")
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		// Like DRF's CharField, a number stands for its own digits.
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			f.Fail(name, "Not a valid string.")
			return ""
		}
		s = n.String()
	}
	if trim {
		s = strings.TrimSpace(s)
	}
	if s == "" && required {
		f.Fail(name, MsgBlank)
	}
	if strings.ContainsRune(s, 0) {
		f.Fail(name, "Null characters are not allowed.")
		return ""
	}
	return s
}

// Object reads a field that holds a JSON object and returns it as it
// came; a missing (when required), null or other value records the
// message DRF gives a dict field.
func (f *Form) Object(name string, required bool) []byte {
	raw, ok := f.fields[name]
	switch {
	case !ok:
		if required {
			f.Fail(name, MsgRequired)
		}
		return nil
	case string(raw) == "null":
		f.Fail(name, "This field may not be null.")
		return nil
	case len(raw) == 0 || raw[0] != '{':
		f.Fail(name, `Expected a dictionary of items but got type "`+jsonType(raw)+`".`)
		return nil
	}
	return raw
}

// jsonType names the JSON type of raw as Python would.
func jsonType(raw json.RawMessage) string {
	switch raw[0] {
	case '"':
		return "str"
	case '[':
		return "list"
	case 't', 'f':
		return "bool"
	}
	return "int"
}

// MaxLen records the DRF message when s has more than n characters.
func (f *Form) MaxLen(name, s string, n int) {
	if utf8.RuneCountInString(s) > n {
		f.Fail(name, MaxLenMessage(n))
	}
}

// MaxLenMessage is Django REST framework's message for a string longer
// than n characters.
func MaxLenMessage(n int) string {
	return "Ensure this field has no more than " + strconv.Itoa(n) + " characters."
}

// Has reports whether the body carries the field at all.
func (f *Form) Has(name string) bool {
	_, ok := f.fields[name]
	return ok
}

// Integer reads an integer field (a JSON number, or a string of one).
func (f *Form) Integer(name string, required bool) (int, bool) {
	raw, ok := f.fields[name]
	if !ok || string(raw) == "null" {
		if required {
			f.Fail(name, MsgRequired)
		}
		return 0, false
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal([]byte(s), &n) != nil {
			f.Fail(name, "A valid integer is required.")
			return 0, false
		}
	}
	return n, true
}

// Fail records msg on the field name.
func (f *Form) Fail(name, msg string) {
	f.errs[name] = append(f.errs[name], msg)
}

// Errors returns the messages recorded so far, by field (nil when none).
func (f *Form) Errors() map[string][]string {
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs
}

// MsgInvalidBool is DRF's message for a value that is not a boolean.
const MsgInvalidBool = "Must be a valid boolean."

// ParseBool reads a boolean as DRF's BooleanField does: true, false, 1,
// 0, and the strings "true", "false", "1", "0", "yes", "no", "on", "off"
// (in any case). ok is false for anything else.
func ParseBool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off":
		return false, true
	}
	return false, false
}

// Bool reads a boolean field (a JSON boolean, 0 or 1, or a string that
// ParseBool accepts). set is false when the field is absent or null, or
// not a boolean (a message is recorded then).
func (f *Form) Bool(name string, required bool) (value, set bool) {
	raw, ok := f.fields[name]
	if !ok || string(raw) == "null" {
		if required {
			f.Fail(name, MsgRequired)
		}
		return false, false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw) // true, false or a number
	}
	if v, ok := ParseBool(s); ok {
		return v, true
	}
	f.Fail(name, MsgInvalidBool)
	return false, false
}
