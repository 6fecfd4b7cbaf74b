package caddyauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxBodyBytes bounds every JSON request body (DESIGN decision 8).
const maxBodyBytes = 64 << 10

// form is a decoded JSON request body, read field by field. Field errors
// collect in the DRF shape; unknown fields are ignored and never applied.
type form struct {
	fields map[string]json.RawMessage
	errs   map[string][]string
}

// readForm decodes the request body: an empty body is an empty object; a
// non-empty one must be `application/json` (415), at most 64 KiB (413), and
// exactly one JSON object with nothing after it (400).
func readForm(w http.ResponseWriter, r *http.Request) (*form, error) {
	f := &form{fields: map[string]json.RawMessage{}, errs: map[string][]string{}}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errDetail(http.StatusRequestEntityTooLarge, "Request body is too large.")
		}
		return nil, errDetail(http.StatusBadRequest, "Request body could not be read.")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return f, nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		ct := r.Header.Get("Content-Type")
		if len(ct) > 100 || !utf8.ValidString(ct) {
			ct = "(unprintable)"
		}
		return nil, errDetail(http.StatusUnsupportedMediaType, `Unsupported media type "`+strings.ToValidUTF8(ct, "")+`" in request.`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&f.fields); err != nil || f.fields == nil {
		return nil, errDetail(http.StatusBadRequest, "JSON parse error - the body must be one JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errDetail(http.StatusBadRequest, "JSON parse error - unexpected data after the JSON object.")
	}
	return f, nil
}

// str reads a string field. Surrounding white space is trimmed when trim is
// set (DRF's CharField does it by default). A required field that is
// missing, null or blank records the DRF message.
func (f *form) str(name string, required, trim bool) string {
	raw, ok := f.fields[name]
	if !ok {
		if required {
			f.fail(name, msgFieldRequired)
		}
		return ""
	}
	if string(raw) == "null" {
		f.fail(name, "This field may not be null.")
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		// Like DRF's CharField, a number stands for its own digits.
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			f.fail(name, "Not a valid string.")
			return ""
		}
		s = n.String()
	}
	if trim {
		s = strings.TrimSpace(s)
	}
	if s == "" && required {
		f.fail(name, msgFieldBlank)
	}
	if strings.ContainsRune(s, 0) {
		f.fail(name, "Null characters are not allowed.")
		return ""
	}
	return s
}

// maxLen records the DRF message when s has more than n characters.
func (f *form) maxLen(name, s string, n int) {
	if utf8.RuneCountInString(s) > n {
		f.fail(name, "Ensure this field has no more than "+strconv.Itoa(n)+" characters.")
	}
}

// has reports whether the body carries the field at all.
func (f *form) has(name string) bool {
	_, ok := f.fields[name]
	return ok
}

// integer reads an integer field.
func (f *form) integer(name string, required bool) (int, bool) {
	raw, ok := f.fields[name]
	if !ok || string(raw) == "null" {
		if required {
			f.fail(name, msgFieldRequired)
		}
		return 0, false
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil || json.Unmarshal([]byte(s), &n) != nil {
			f.fail(name, "A valid integer is required.")
			return 0, false
		}
	}
	return n, true
}

func (f *form) fail(name, msg string) {
	f.errs[name] = append(f.errs[name], msg)
}

// err returns the collected field errors as a 400, or nil.
func (f *form) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return errFields(f.errs)
}

// bearerToken returns the token of an `Authorization: Bearer` header (the
// scheme is case-insensitive), or "" when there is none.
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// normalizeEmail lower-cases and trims an address, as every lookup does.
func normalizeEmail(s string) string {
	return strings.ToLower(strings.TrimSpace(s))
}

// formOf reads a posted page form like a JSON body: each named field that
// was posted becomes a string field, so the endpoints' validation applies
// unchanged.
func formOf(vals url.Values, names ...string) *form {
	f := &form{fields: map[string]json.RawMessage{}, errs: map[string][]string{}}
	for _, name := range names {
		if vals.Has(name) {
			raw, _ := json.Marshal(vals.Get(name))
			f.fields[name] = raw
		}
	}
	return f
}
