package useragent

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Headers as the browsers and clients named send them.
func TestParse(t *testing.T) {
	tests := []struct {
		name, ua string
		want     Agent
	}{
		// Windows.
		{"Chrome on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
			Agent{"Chrome 126", "Windows", Desktop}},
		{"Firefox on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0",
			Agent{"Firefox 127", "Windows", Desktop}},
		{"Edge on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
			Agent{"Edge 126", "Windows", Desktop}},
		{"Opera on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0",
			Agent{"Opera 111", "Windows", Desktop}},
		{"legacy Edge on Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582",
			Agent{"Edge 18", "Windows", Desktop}},
		{"Internet Explorer 11 on Windows 7", "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
			Agent{"Internet Explorer 11", "Windows 7", Desktop}},
		{"Internet Explorer 10 on Windows 8", "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; Trident/6.0)",
			Agent{"Internet Explorer 10", "Windows 8", Desktop}},

		// macOS.
		{"Chrome 91 on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/91.0.4472.114 Safari/537.36",
			Agent{"Chrome 91", "macOS", Desktop}},
		{"Safari on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
			Agent{"Safari 17", "macOS", Desktop}},
		{"Firefox on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0",
			Agent{"Firefox 127", "macOS", Desktop}},
		{"Edge on macOS", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
			Agent{"Edge 126", "macOS", Desktop}},

		// Linux and ChromeOS.
		{"Chrome on Linux", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
			Agent{"Chrome 126", "Linux", Desktop}},
		{"Firefox on Ubuntu", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
			Agent{"Firefox 127", "Linux", Desktop}},
		{"Chromium on Linux", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chromium/125.0.6422.141 Chrome/125.0.6422.141 Safari/537.36",
			Agent{"Chromium 125", "Linux", Desktop}},
		{"Chrome on ChromeOS", "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
			Agent{"Chrome 126", "ChromeOS", Desktop}},

		// Android.
		{"Chrome on an Android phone", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36",
			Agent{"Chrome 126", "Android 10", Mobile}},
		{"Chrome on an Android tablet", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
			Agent{"Chrome 126", "Android 10", Tablet}},
		{"Firefox on an Android phone", "Mozilla/5.0 (Android 14; Mobile; rv:127.0) Gecko/127.0 Firefox/127.0",
			Agent{"Firefox 127", "Android 14", Mobile}},
		{"Firefox on an Android tablet", "Mozilla/5.0 (Android 14; Tablet; rv:127.0) Gecko/127.0 Firefox/127.0",
			Agent{"Firefox 127", "Android 14", Tablet}},
		{"Samsung Internet", "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
			Agent{"Samsung Internet 25", "Android 14", Mobile}},
		{"Edge on Android", "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36 EdgA/126.0.0.0",
			Agent{"Edge 126", "Android 10", Mobile}},
		{"old Android with a minor version", "Mozilla/5.0 (Linux; Android 8.1.0; Pixel 2) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.210 Mobile Safari/537.36",
			Agent{"Chrome 90", "Android 8.1", Mobile}},
		{"a phone whose model ends in bot", "Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
			Agent{"Chrome 126", "Android 10", Mobile}},

		// iOS and iPadOS.
		{"Safari on an iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
			Agent{"Safari 17", "iOS 17.5", Mobile}},
		{"Safari 14 on iOS 14.6", "Mozilla/5.0 (iPhone; CPU iPhone OS 14_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/14.1.1 Mobile/15E148 Safari/604.1",
			Agent{"Safari 14", "iOS 14.6", Mobile}},
		{"Chrome on an iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
			Agent{"Chrome 126", "iOS 17.5", Mobile}},
		{"Firefox on an iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/127.0 Mobile/15E148 Safari/605.1.15",
			Agent{"Firefox 127", "iOS 17.5", Mobile}},
		{"Edge on an iPhone", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 EdgiOS/126.2592.86 Mobile/15E148 Safari/605.1.15",
			Agent{"Edge 126", "iOS 17.5", Mobile}},
		{"Safari on an iPad", "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
			Agent{"Safari 17", "iPadOS 17.5", Tablet}},
		{"a web view inside an iPhone app", "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
			Agent{"", "iOS 16.0", Mobile}},

		// Crawlers and scripts.
		{"Googlebot", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			Agent{"Googlebot 2", "", Bot}},
		{"Googlebot for phones", "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
			Agent{"Googlebot 2", "Android 6.0", Bot}},
		{"Bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
			Agent{"bingbot 2", "", Bot}},
		{"Applebot", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
			Agent{"Applebot 0", "macOS", Bot}},
		{"Baiduspider", "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
			Agent{"Baiduspider 2", "", Bot}},
		{"Facebook's link preview", "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
			Agent{"facebookexternalhit 1", "", Bot}},
		{"curl", "curl/8.5.0", Agent{"curl 8", "", Bot}},
		{"Wget", "Wget/1.21.4", Agent{"Wget 1", "", Bot}},
		{"python-requests", "python-requests/2.31.0", Agent{"python-requests 2", "", Bot}},
		{"Go's client", "Go-http-client/1.1", Agent{"Go-http-client 1", "", Bot}},
		{"headless Chromium", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36",
			Agent{"Headless Chrome 126", "Linux", Bot}},

		// Nothing to go by.
		{"empty", "", Agent{}},
		{"a bare Mozilla token", "Mozilla/5.0", Agent{}},
		{"free text", "my own client, no version", Agent{}},
		{"a token without a version", "Chrome/ (Windows NT 10.0)", Agent{"Chrome", "Windows", Desktop}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Parse(tc.ua); got != tc.want {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tc.ua, got, tc.want)
			}
		})
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("a", MaxLen-1) + "é" // the last character would end past MaxLen
	tests := []struct{ name, in, want string }{
		{"kept", "curl/8.5.0", "curl/8.5.0"},
		{"trimmed", "  curl/8.5.0 \t", "curl/8.5.0"},
		{"controls dropped", "curl/8\x00.5\x1b.0\x7f", "curl/8.5.0"},
		{"invalid UTF-8 dropped", "curl/\xff8.5.0", "curl/8.5.0"},
		{"exactly MaxLen", strings.Repeat("b", MaxLen), strings.Repeat("b", MaxLen)},
		{"cut at MaxLen", strings.Repeat("b", MaxLen+10), strings.Repeat("b", MaxLen)},
		{"cut before a character that does not fit", long, strings.Repeat("a", MaxLen-1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Clip(tc.in); got != tc.want {
				t.Errorf("Clip(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzParse feeds Parse and Clip any bytes: they never panic, Clip keeps
// its bounds, and Parse reads only what Clip would keep the same way.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Android", " OS ", "Trident/ rv:", "MSIE ", "Chrome/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ua string) {
		c := Clip(ua)
		if len(c) > MaxLen || !utf8.ValidString(c) || Clip(c) != c {
			t.Fatalf("Clip(%q) = %q", ua, c)
		}
		a := Parse(ua)
		switch a.Device {
		case "", Desktop, Mobile, Tablet, Bot:
		default:
			t.Fatalf("Parse(%q): device %q", ua, a.Device)
		}
		if a.Device == "" && a.OS != "" {
			t.Fatalf("Parse(%q) = %+v: an OS without a device kind", ua, a)
		}
		Parse(c)
	})
}
