// Package useragent reads a User-Agent header so that a person can
// recognise their sessions: the browser and its major version, the
// operating system, and the kind of device. It knows the common forms
// (the browsers built on Chromium, Firefox, Safari, old Internet Explorer,
// crawlers and the HTTP clients of scripts), not every client there is:
// what it does not recognise it leaves empty. It never fails.
package useragent

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is how many bytes of a User-Agent header Clip keeps.
const MaxLen = 512

// Device kinds.
const (
	Desktop = "desktop"
	Mobile  = "mobile"
	Tablet  = "tablet"
	// Bot is a crawler or the HTTP client of a script (curl, a library's
	// default), which no person reads pages with.
	Bot = "bot"
)

// Agent is what Parse makes of a User-Agent header. Each field is ""
// when the header does not tell.
type Agent struct {
	Browser string // the browser (or bot) and its major version: "Chrome 126", "Safari 17", "curl 8"
	OS      string // "Windows", "macOS", "Linux", "ChromeOS", "Android 14", "iOS 17.5", "iPadOS 17.5"
	Device  string // Desktop, Mobile, Tablet or Bot
}

// Clip is ua fit for storing: control characters and invalid UTF-8
// dropped, spaces trimmed, and cut to at most MaxLen bytes on a character
// boundary.
func Clip(ua string) string {
	clean := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return -1
		}
		return r
	}, ua)
	clean = strings.TrimSpace(clean)
	if len(clean) > MaxLen {
		cut := MaxLen
		for !utf8.RuneStart(clean[cut]) {
			cut--
		}
		clean = strings.TrimSpace(clean[:cut])
	}
	return clean
}

// Parse reads ua.
func Parse(ua string) Agent {
	a := Agent{OS: osOf(ua)}
	if name, ok := botOf(ua); ok {
		a.Browser, a.Device = name, Bot
		return a
	}
	a.Browser = browserOf(ua)
	a.Device = deviceOf(ua, a.OS)
	return a
}

// browsers are the product tokens that name a browser, in the order they
// are looked for: a browser built on Chromium also names Chrome and
// Safari, and Chrome names Safari.
var browsers = []struct{ token, name string }{
	{"Edg", "Edge"}, {"EdgA", "Edge"}, {"EdgiOS", "Edge"}, {"Edge", "Edge"},
	{"OPR", "Opera"}, {"OPiOS", "Opera"},
	{"SamsungBrowser", "Samsung Internet"},
	{"Firefox", "Firefox"}, {"FxiOS", "Firefox"},
	{"CriOS", "Chrome"},
	{"Chromium", "Chromium"},
	{"Chrome", "Chrome"},
}

// browserOf names the browser of ua, with its major version.
func browserOf(ua string) string {
	for _, b := range browsers {
		if v, ok := product(ua, b.token); ok {
			return withMajor(b.name, v)
		}
	}
	if _, ok := product(ua, "Safari"); ok {
		// Safari's own version is in Version/; a page inside an app (a
		// web view) has none and is no Safari.
		if v, ok := product(ua, "Version"); ok {
			return withMajor("Safari", v)
		}
		return ""
	}
	if i := strings.Index(ua, "MSIE "); i >= 0 {
		return withMajor("Internet Explorer", ua[i+len("MSIE "):])
	}
	if _, ok := product(ua, "Trident"); ok {
		return withMajor("Internet Explorer", after(ua, "rv:"))
	}
	return ""
}

// scripts are the product tokens of HTTP clients that scripts send.
var scripts = []string{"curl", "Wget", "python-requests", "Python-urllib", "Go-http-client", "Java", "PostmanRuntime", "HTTPie", "facebookexternalhit", "HeadlessChrome"}

// botOf names the crawler or the script client of ua: a known client, or
// a product token whose name says it crawls.
func botOf(ua string) (string, bool) {
	for _, s := range scripts {
		if v, ok := product(ua, s); ok {
			if s == "HeadlessChrome" {
				s = "Headless Chrome"
			}
			return withMajor(s, v), true
		}
	}
	for _, tok := range strings.FieldsFunc(ua, isSeparator) {
		name, v, ok := strings.Cut(tok, "/")
		if !ok || name == "" {
			continue
		}
		low := strings.ToLower(name)
		if strings.Contains(low, "bot") || strings.Contains(low, "crawler") || strings.Contains(low, "spider") {
			return withMajor(name, v), true
		}
	}
	return "", false
}

// osOf names the operating system of ua, with its version where the
// header still tells it (browsers freeze the versions of Windows and
// macOS, so theirs are left out).
func osOf(ua string) string {
	switch {
	case strings.Contains(ua, "Windows Phone"):
		return "Windows Phone"
	case strings.Contains(ua, "iPhone"), strings.Contains(ua, "iPod"):
		return joinVersion("iOS", appleVersion(ua))
	case strings.Contains(ua, "iPad"):
		return joinVersion("iPadOS", appleVersion(ua))
	case strings.Contains(ua, "Android"):
		v := strings.TrimSpace(after(ua, "Android"))
		return joinVersion("Android", twoParts(v))
	case strings.Contains(ua, "CrOS"):
		return "ChromeOS"
	case strings.Contains(ua, "Windows NT 6.1"):
		return "Windows 7"
	case strings.Contains(ua, "Windows NT 6.2"):
		return "Windows 8"
	case strings.Contains(ua, "Windows NT 6.3"):
		return "Windows 8.1"
	case strings.Contains(ua, "Windows"):
		return "Windows"
	case strings.Contains(ua, "Macintosh"), strings.Contains(ua, "Mac OS X"):
		return "macOS"
	case strings.Contains(ua, "Linux"), strings.Contains(ua, "X11"):
		return "Linux"
	case strings.Contains(ua, "FreeBSD"):
		return "FreeBSD"
	}
	return ""
}

// deviceOf tells the kind of device of a browser on os.
func deviceOf(ua, os string) string {
	switch {
	case strings.HasPrefix(os, "iPadOS"):
		return Tablet
	case strings.HasPrefix(os, "iOS"), os == "Windows Phone":
		return Mobile
	case strings.HasPrefix(os, "Android"):
		// Android's browsers say Mobile on a phone only (Firefox says
		// Tablet on a tablet).
		if strings.Contains(ua, "Mobile") && !strings.Contains(ua, "Tablet") {
			return Mobile
		}
		return Tablet
	case os != "":
		return Desktop
	}
	return ""
}

// isSeparator ends a product token.
func isSeparator(r rune) bool {
	return r == ' ' || r == '(' || r == ')' || r == ';' || r == ','
}

// product finds the product token name/version in ua and returns its
// version. The name must start a token: "Chrome" is not found in
// "HeadlessChrome/1".
func product(ua, name string) (string, bool) {
	for i := 0; i < len(ua); {
		j := strings.Index(ua[i:], name+"/")
		if j < 0 {
			return "", false
		}
		j += i
		if j == 0 || isSeparator(rune(ua[j-1])) {
			v := ua[j+len(name)+1:]
			if end := strings.IndexFunc(v, isSeparator); end >= 0 {
				v = v[:end]
			}
			return v, true
		}
		i = j + 1
	}
	return "", false
}

// after is what follows the first marker in ua, up to the end of its
// token group (a ';' or a ')'); "" without the marker.
func after(ua, marker string) string {
	i := strings.Index(ua, marker)
	if i < 0 {
		return ""
	}
	v := ua[i+len(marker):]
	if end := strings.IndexAny(v, ";)"); end >= 0 {
		v = v[:end]
	}
	return v
}

// appleVersion reads "OS 17_5 like Mac OS X" as 17.5.
func appleVersion(ua string) string {
	i := strings.Index(ua, " OS ")
	if i < 0 {
		return ""
	}
	v := ua[i+len(" OS "):]
	if end := strings.IndexByte(v, ' '); end >= 0 {
		v = v[:end]
	}
	return twoParts(strings.ReplaceAll(v, "_", "."))
}

// twoParts is a dotted version cut to major.minor, or "" when it does
// not start with a digit.
func twoParts(v string) string {
	end := 0
	dots := 0
	for end < len(v) && (isDigit(v[end]) || (v[end] == '.' && dots < 1 && end+1 < len(v) && isDigit(v[end+1]))) {
		if v[end] == '.' {
			dots++
		}
		end++
	}
	return v[:end]
}

// withMajor is name and the major version of v, or name alone when v
// starts with no digit.
func withMajor(name, v string) string {
	end := 0
	for end < len(v) && isDigit(v[end]) {
		end++
	}
	return joinVersion(name, v[:end])
}

func joinVersion(name, v string) string {
	if v == "" {
		return name
	}
	return name + " " + v
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
