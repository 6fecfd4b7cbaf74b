package passwords

import (
	"bufio"
	_ "embed"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

//go:generate go run gencommonpasswords.go

// Password length limits in characters (Unicode code points), DESIGN.md
// decision 7. Passwords are never truncated.
const (
	MinLength = 8
	MaxLength = 128
)

// maxEmailSimilarity is Django's UserAttributeSimilarityValidator default.
const maxEmailSimilarity = 0.7

// The messages of the password checks, worded as Django's validators and
// Django REST framework's length check word them.
const (
	msgPasswordTooLong    = "Ensure this field has no more than 128 characters."
	msgPasswordTooShort   = "This password is too short. It must contain at least 8 characters."
	msgPasswordTooCommon  = "This password is too common."
	msgPasswordNumeric    = "This password is entirely numeric."
	msgPasswordTooSimilar = "The password is too similar to the email."
)

//go:embed commonpasswords.txt
var commonPasswordsText string

var (
	commonPasswordsOnce sync.Once
	commonPasswords     map[string]struct{}
)

// isCommonPassword reports whether password, trimmed and lower-cased as
// Django's CommonPasswordValidator does, is in the embedded list.
func isCommonPassword(password string) bool {
	commonPasswordsOnce.Do(func() {
		commonPasswords = make(map[string]struct{}, 4096)
		sc := bufio.NewScanner(strings.NewReader(commonPasswordsText))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				commonPasswords[strings.ToLower(line)] = struct{}{}
			}
		}
	})
	_, found := commonPasswords[strings.ToLower(strings.TrimSpace(password))]
	return found
}

// Validate returns the reasons password is not acceptable for an
// account with the given e-mail address, in Django's order (similarity,
// length, common, numeric); nil when it is acceptable. A password longer
// than 128 characters gets only the length message, as the serializer
// field rejects it before the validators run.
//
// The similarity rule is Django's UserAttributeSimilarityValidator applied
// to the e-mail address: the lower-cased password is compared with the
// lower-cased address and with each of its parts split at non-word
// characters ("jane.doe@example.com" gives "jane", "doe", "example",
// "com" and the whole address); it is too similar when the
// Ratcliff/Obershelp ratio 2*M/T (Python's difflib.SequenceMatcher.ratio)
// reaches 0.7 for any of them. A part is skipped when the password is at
// least ten times its length and the part is shorter than 0.35 times the
// password's length, because such a short part cannot make a long
// password guessable.
//
// One rule is added to Django's, because its ratio lets "janedoe1" pass
// for jane.doe@example.com: the password is also too similar when, with
// everything but letters and digits removed and lower-cased, it contains
// the address's local part treated the same way and that is at least four
// characters long.
func Validate(password, email string) []string {
	n := utf8.RuneCountInString(password)
	if n > MaxLength {
		return []string{msgPasswordTooLong}
	}
	var msgs []string
	if tooSimilarToEmail(password, email) {
		msgs = append(msgs, msgPasswordTooSimilar)
	}
	if n < MinLength {
		msgs = append(msgs, msgPasswordTooShort)
	}
	if isCommonPassword(password) {
		msgs = append(msgs, msgPasswordTooCommon)
	}
	if isNumeric(password) {
		msgs = append(msgs, msgPasswordNumeric)
	}
	return msgs
}

// isNumeric reports whether s is non-empty and made of digits only (any
// script, as Python's str.isdigit).
func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

func tooSimilarToEmail(password, email string) bool {
	if email == "" || password == "" {
		return false
	}
	pw := []rune(strings.ToLower(password))
	value := strings.ToLower(email)
	parts := strings.FieldsFunc(value, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsNumber(r) || r == '_')
	})
	if local, _, found := strings.Cut(value, "@"); found {
		if l := lettersAndDigits(local); utf8.RuneCountInString(l) >= 4 && strings.Contains(lettersAndDigits(string(pw)), l) {
			return true
		}
	}
	for _, part := range append(parts, value) {
		p := []rune(part)
		if len(pw) >= 10*len(p) && float64(len(p)) < maxEmailSimilarity/2*float64(len(pw)) {
			continue
		}
		if similarityRatio(pw, p) >= maxEmailSimilarity {
			return true
		}
	}
	return false
}

// lettersAndDigits returns s without the runes that are neither letters
// nor digits.
func lettersAndDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			return r
		}
		return -1
	}, s)
}

// similarityRatio returns 2*M/T, where T is the total length of a and b
// and M the number of elements in the matching blocks found by the
// Ratcliff/Obershelp method: take the longest common block (the earliest
// in a, then in b, on ties), then recurse on the pieces left and right of
// it. It gives the same value as Python's difflib.SequenceMatcher(None, a,
// b).ratio(), including its "autojunk" rule: when b has 200 or more
// elements, elements occurring more than 1% of the time in b are not used
// to start a block.
func similarityRatio(a, b []rune) float64 {
	if len(a)+len(b) == 0 {
		return 1
	}
	b2j := make(map[rune][]int, len(b))
	for j, r := range b {
		b2j[r] = append(b2j[r], j)
	}
	if n := len(b); n >= 200 {
		limit := n/100 + 1
		for r, js := range b2j {
			if len(js) > limit {
				delete(b2j, r)
			}
		}
	}
	type span struct{ alo, ahi, blo, bhi int }
	matched := 0
	queue := []span{{0, len(a), 0, len(b)}}
	for len(queue) > 0 {
		s := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		i, j, k := longestMatch(a, b, b2j, s.alo, s.ahi, s.blo, s.bhi)
		if k == 0 {
			continue
		}
		matched += k
		if s.alo < i && s.blo < j {
			queue = append(queue, span{s.alo, i, s.blo, j})
		}
		if i+k < s.ahi && j+k < s.bhi {
			queue = append(queue, span{i + k, s.ahi, j + k, s.bhi})
		}
	}
	return 2 * float64(matched) / float64(len(a)+len(b))
}

// longestMatch finds the longest block a[i:i+k] == b[j:j+k] inside
// a[alo:ahi] and b[blo:bhi], using b2j (b's positions per element, minus
// the autojunk elements) to start blocks, then extending the block over
// equal neighbours, as difflib's find_longest_match does without a junk
// function.
func longestMatch(a, b []rune, b2j map[rune][]int, alo, ahi, blo, bhi int) (besti, bestj, bestk int) {
	besti, bestj = alo, blo
	j2len := map[int]int{}
	for i := alo; i < ahi; i++ {
		next := map[int]int{}
		for _, j := range b2j[a[i]] {
			if j < blo {
				continue
			}
			if j >= bhi {
				break
			}
			k := j2len[j-1] + 1
			next[j] = k
			if k > bestk {
				besti, bestj, bestk = i-k+1, j-k+1, k
			}
		}
		j2len = next
	}
	for besti > alo && bestj > blo && a[besti-1] == b[bestj-1] {
		besti, bestj, bestk = besti-1, bestj-1, bestk+1
	}
	for besti+bestk < ahi && bestj+bestk < bhi && a[besti+bestk] == b[bestj+bestk] {
		bestk++
	}
	return besti, bestj, bestk
}
