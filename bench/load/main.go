// Command load drives one flow of a running caddy-jwt-allauth for a fixed
// time with concurrent clients and prints requests/s and latencies. It is
// the load generator of bench/flows.sh (and of the hash-rate measurement
// of bench/login.sh); loopback only.
//
//	go run ./bench/load -mode refresh    -base http://127.0.0.1:18481/auth -email ... -password ...
//	go run ./bench/load -mode mfa-wrong  -base ... -email ... -password ...   (the user gets TOTP first)
//	go run ./bench/load -mode mfa-right  -base ... -email bench-%d@example.com -password ... -users 1000
//	go run ./bench/load -mode hashrate                                        (argon2id, no server)
//	go run ./bench/load -mode password-flood -base ... -email ... -password ... -victim-email ... -victim-password ...
//
// Modes:
//
//	refresh    each client logs in once, then refreshes in a loop with the
//	           refresh cookie it got back (rotation: each token once).
//	mfa-wrong  the user's TOTP is enrolled; each client logs in once for a
//	           challenge, then sends wrong codes against it. This is the
//	           cost of a refused verify (challenge lookup, lockout check,
//	           secret decryption, code match, failure row written); run it
//	           with the MFA attempt limits off.
//	mfa-right  accepted verifies: -users accounts are signed up (sign-up
//	           open, no verification: -email is a pattern with %d), each
//	           enrols TOTP and logs in twice for two challenges, all before
//	           the clock starts; then -c clients answer every challenge with
//	           a right code, each user's first with the current step's and
//	           its second with the next step's (both inside the default
//	           skew of one step; the enrolment spent the step before), and
//	           the rate of those 2 × -users verifies is printed. A code is
//	           accepted once per step and user, so a user can answer no
//	           more than that in a loop; the count, not -d, ends the run.
//	hashrate   argon2id hashes/s with the module's parameters (19 MiB, t=2,
//	           p=1) on -c goroutines: the machine's ceiling for logins/s.
//	password-flood
//	           another user's logins during a flood: -victims clients (from
//	           127.0.0.3) log the victim in one after another, first alone
//	           for -d, then for -d while -c clients from 127.0.0.2 send
//	           POST /password/change/ with a wrong old password and the
//	           flooding user's one access token; prints the victim's p50
//	           and p99 alone and under the flood, and both sides' statuses.
//	           The source addresses are loopback ones (Linux routes all of
//	           127.0.0.0/8 to lo), so the server sees two clients.
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"
)

func main() {
	mode := flag.String("mode", "refresh", "refresh, mfa-wrong, mfa-right, hashrate or password-flood")
	base := flag.String("base", "http://127.0.0.1:18481/auth", "endpoint prefix URL")
	email := flag.String("email", "bench@example.com", "user e-mail")
	password := flag.String("password", "", "user password")
	conns := flag.Int("c", 32, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "duration")
	victimEmail := flag.String("victim-email", "victim@example.com", "password-flood: the user whose logins are measured")
	victimPassword := flag.String("victim-password", "", "password-flood: the victim's password")
	victims := flag.Int("victims", 2, "password-flood: concurrent victim clients")
	users := flag.Int("users", 1000, "mfa-right: accounts signed up, two verifies each")
	flag.Parse()

	switch *mode {
	case "hashrate":
		hashRate(*conns, *dur)
		return
	case "password-flood":
		base := strings.TrimRight(*base, "/")
		passwordFlood(fromAddr(base, "127.0.0.2", *conns), fromAddr(base, "127.0.0.3", *victims),
			*email, *password, *victimEmail, *victimPassword, *conns, *victims, *dur)
		return
	case "mfa-right":
		acceptedVerify(newClient(*base, *conns), *email, *password, *users, *conns)
		return
	case "refresh", "mfa-wrong":
	default:
		fail("unknown mode %q", *mode)
	}
	c := newClient(*base, *conns)
	if *mode == "mfa-wrong" {
		c.enrolTOTP(*email, *password)
	}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		statuses  = map[int]int{}
		wg        sync.WaitGroup
		stop      atomic.Bool
	)
	start := time.Now()
	for range *conns {
		wg.Go(func() {
			var lat []time.Duration
			st := map[int]int{}
			var step func() int
			switch *mode {
			case "refresh":
				cookie := c.loginCookie(*email, *password)
				step = func() int {
					status, next := c.refresh(cookie)
					if next != "" {
						cookie = next
					}
					return status
				}
			case "mfa-wrong":
				challenge := c.challenge(*email, *password)
				step = func() int {
					status, _ := c.post("/mfa/verify/", map[string]string{"challenge_id": challenge, "code": "000000"}, "", "")
					return status
				}
			}
			for !stop.Load() {
				t0 := time.Now()
				st[step()]++
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			for k, v := range st {
				statuses[k] += v
			}
			mu.Unlock()
		})
	}
	time.Sleep(*dur)
	stop.Store(true)
	wg.Wait()
	report(*mode, latencies, time.Since(start), *conns, statuses)
}

// report prints the run's line: requests, rate, p50, p99 and statuses.
func report(mode string, latencies []time.Duration, elapsed time.Duration, conns int, statuses map[int]int) {
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))]
	}
	fmt.Printf("%s: %d requests in %.1fs with %d clients: %.0f req/s, p50 %v, p99 %v, statuses %v\n",
		mode, len(latencies), elapsed.Seconds(), conns, float64(len(latencies))/elapsed.Seconds(),
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), statuses)
}

// newClient is a client of base with room for conns connections.
func newClient(base string, conns int) *client {
	return &client{base: strings.TrimRight(base, "/"), http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns * 2},
	}}
}

type client struct {
	base string
	http *http.Client
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "load: "+format+"\n", args...)
	os.Exit(1)
}

// post sends a JSON body (with an optional bearer token and refresh
// cookie) and returns the status and decoded body.
func (c *client) post(path string, body any, bearer, cookie string) (int, *http.Response) {
	b := []byte("{}")
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		fail("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "refresh_token", Value: cookie})
	}
	res, err := c.http.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(raw))
	return res.StatusCode, res
}

func decode(res *http.Response) map[string]any {
	var m map[string]any
	if res != nil {
		_ = json.NewDecoder(res.Body).Decode(&m)
	}
	return m
}

func refreshCookie(res *http.Response) string {
	for _, ck := range res.Cookies() {
		if ck.Name == "refresh_token" {
			return ck.Value
		}
	}
	return ""
}

// login logs in, retrying while the server sheds load (503: all hashing
// slots busy, as when every client logs in at the same moment).
func (c *client) login(email, password string) (int, *http.Response) {
	for range 50 {
		status, res := c.post("/login/", map[string]string{"email": email, "password": password}, "", "")
		if status != http.StatusServiceUnavailable {
			return status, res
		}
		time.Sleep(200 * time.Millisecond)
	}
	return http.StatusServiceUnavailable, nil
}

func (c *client) loginCookie(email, password string) string {
	status, res := c.login(email, password)
	if status != http.StatusOK || refreshCookie(res) == "" {
		fail("login answered %d", status)
	}
	return refreshCookie(res)
}

func (c *client) refresh(cookie string) (int, string) {
	status, res := c.post("/refresh/", nil, "", cookie)
	if res == nil {
		return status, ""
	}
	return status, refreshCookie(res)
}

func (c *client) challenge(email, password string) string {
	status, res := c.login(email, password)
	id, _ := decode(res)["challenge_id"].(string)
	if status != http.StatusOK || id == "" {
		fail("login for a challenge answered %d", status)
	}
	return id
}

// enrolTOTP gives the user a TOTP authenticator through the API unless
// they have one already.
func (c *client) enrolTOTP(email, password string) {
	status, res := c.login(email, password)
	body := decode(res)
	if _, pending := body["challenge_id"]; pending {
		return // already enrolled
	}
	access, _ := body["access"].(string)
	if status != http.StatusOK || access == "" {
		fail("login before enrolment answered %d", status)
	}
	c.enrol(access, 0)
}

// enrol gives the bearer of access a TOTP authenticator, activated with
// the code of the time back before now, and returns its secret.
func (c *client) enrol(access string, back time.Duration) string {
	status, res := c.post("/mfa/setup/", nil, access, "")
	setup := decode(res)
	secret, _ := setup["secret"].(string)
	if status != http.StatusOK || secret == "" {
		fail("mfa setup answered %d %v", status, setup)
	}
	// A code of the step before the current one is refused when the
	// request reaches the server in the next step: a new one is made then.
	for range 3 {
		code, err := totp.GenerateCode(secret, time.Now().Add(-back))
		if err != nil {
			fail("%v", err)
		}
		if status, res = c.post("/mfa/activate/", map[string]string{"code": code}, access, ""); status == http.StatusOK {
			return secret
		}
	}
	fail("mfa activate answered %d %v", status, decode(res))
	return ""
}

// signUp creates the account through POST /registration/ and returns
// the access token it answers with (no verification: a session at
// once), retrying while the server sheds load (503, as login).
func (c *client) signUp(email, password string) string {
	for range 50 {
		status, res := c.post("/registration/", map[string]string{"email": email, "password1": password, "password2": password, "first_name": "Bench", "last_name": "User"}, "", "")
		switch status {
		case http.StatusOK, http.StatusCreated:
			access, _ := decode(res)["access"].(string)
			if access == "" {
				fail("sign-up of %s gave no access token: is email_verification none?", email)
			}
			return access
		case http.StatusServiceUnavailable:
			time.Sleep(200 * time.Millisecond)
		default:
			fail("sign-up of %s answered %d %v", email, status, decode(res))
		}
	}
	fail("sign-up of %s: the server stayed busy", email)
	return ""
}

// acceptedVerify is the mfa-right mode (see the command's doc).
func acceptedVerify(c *client, pattern, password string, users, conns int) {
	type account struct {
		secret     string
		challenges [2]string
	}
	accounts := make([]account, users)
	// Each phase runs on conns goroutines, every one taking the next user.
	each := func(f func(i int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conns {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < users; i = int(next.Add(1)) - 1 {
					f(i)
				}
			})
		}
		wg.Wait()
	}
	t0 := time.Now()
	each(func(i int) {
		email := fmt.Sprintf(pattern, i)
		// Activated with the step before the current one, so that the
		// current and the next are left to the verifies.
		a := &accounts[i]
		a.secret = c.enrol(c.signUp(email, password), 30*time.Second)
		for k := range a.challenges {
			a.challenges[k] = c.challenge(email, password)
		}
	})
	fmt.Printf("set-up: %d accounts signed up, enrolled and logged in twice in %.1fs\n", users, time.Since(t0).Seconds())

	var (
		mu        sync.Mutex
		latencies []time.Duration
		statuses  = map[int]int{}
	)
	start := time.Now()
	each(func(i int) {
		a := accounts[i]
		for k, ch := range a.challenges {
			code, err := totp.GenerateCode(a.secret, time.Now().Add(time.Duration(k)*30*time.Second))
			if err != nil {
				fail("%v", err)
			}
			t := time.Now()
			status, _ := c.post("/mfa/verify/", map[string]string{"challenge_id": ch, "code": code}, "", "")
			lat := time.Since(t)
			mu.Lock()
			latencies = append(latencies, lat)
			statuses[status]++
			mu.Unlock()
		}
	})
	report("mfa-right", latencies, time.Since(start), conns, statuses)
}

// fromAddr is a client of base whose connections leave from the loopback
// address src.
func fromAddr(base, src string, conns int) *client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &client{base: base, http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: conns * 2},
	}}
}

// passwordFlood measures the victim's logins alone, then during a flood
// of wrong password changes from another client.
func passwordFlood(flooder, victim *client, email, password, victimEmail, victimPassword string, conns, victims int, d time.Duration) {
	status, res := flooder.login(email, password)
	token, _ := decode(res)["access"].(string)
	if status != http.StatusOK || token == "" {
		fail("the flooding user's login answered %d", status)
	}
	if status, _ := victim.login(victimEmail, victimPassword); status != http.StatusOK {
		fail("the victim's login answered %d", status)
	}
	measure := func(label string, flood bool) {
		var (
			mu        sync.Mutex
			latencies []time.Duration
			vStatus   = map[int]int{}
			fStatus   = map[int]int{}
			wg        sync.WaitGroup
			stop      atomic.Bool
		)
		floodStart := time.Now()
		if flood {
			body := map[string]string{"old_password": "not-the-password", "new_password1": "Fl00d-Passw0rd-x", "new_password2": "Fl00d-Passw0rd-x"}
			for range conns {
				wg.Go(func() {
					st := map[int]int{}
					for !stop.Load() {
						s, _ := flooder.post("/password/change/", body, token, "")
						st[s]++
					}
					mu.Lock()
					for k, v := range st {
						fStatus[k] += v
					}
					mu.Unlock()
				})
			}
			time.Sleep(500 * time.Millisecond) // let the flood fill the queue
		}
		var vg sync.WaitGroup
		start := time.Now()
		for range victims {
			vg.Go(func() {
				var lat []time.Duration
				st := map[int]int{}
				for time.Since(start) < d {
					t0 := time.Now()
					s, _ := victim.post("/login/", map[string]string{"email": victimEmail, "password": victimPassword}, "", "")
					lat = append(lat, time.Since(t0))
					st[s]++
				}
				mu.Lock()
				latencies = append(latencies, lat...)
				for k, v := range st {
					vStatus[k] += v
				}
				mu.Unlock()
			})
		}
		vg.Wait()
		stop.Store(true)
		wg.Wait()
		floodTime := time.Since(floodStart)
		slices.Sort(latencies)
		pct := func(p float64) time.Duration {
			if len(latencies) == 0 {
				return 0
			}
			return latencies[int(p*float64(len(latencies)-1))]
		}
		fmt.Printf("%s: victim logins %d (%d clients), p50 %v, p99 %v, statuses %v", label, len(latencies), victims,
			pct(0.50).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond), vStatus)
		if flood {
			n := 0
			for _, v := range fStatus {
				n += v
			}
			fmt.Printf("; flood %d clients, %.0f req/s, statuses %v", conns, float64(n)/floodTime.Seconds(), fStatus)
		}
		fmt.Println()
	}
	measure("alone", false)
	measure("under flood", true)
}

// hashRate runs argon2id with the module's parameters on n goroutines.
func hashRate(n int, d time.Duration) {
	var count atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Go(func() {
			salt := make([]byte, 16)
			_, _ = rand.Read(salt)
			for !stop.Load() {
				argon2.IDKey([]byte("correct horse battery staple"), salt, 2, 19*1024, 1, 32)
				count.Add(1)
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	fmt.Printf("hashrate: %.1f argon2id hashes/s on %d goroutines\n", float64(count.Load())/time.Since(start).Seconds(), n)
}
