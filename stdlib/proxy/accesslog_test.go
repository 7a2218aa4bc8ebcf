package proxy

import (
	"strconv"
	"testing"
)

// appendQuote's shortcut must write what strconv.AppendQuote writes: the
// access log's fields stay quoted and escaped the same way.
func TestAppendQuoteMatchesStrconv(t *testing.T) {
	cases := []string{"", "v0.bench.test", "curl/8.0", `a"b`, `a\b`, "a\x00b", "a\nb", "tab\t", "\x7f", "é", "\xff\xfe", "~ !#$%&'()*+,-./:;<=>?@[]^_`{|}"}
	for c := 0; c < 256; c++ {
		cases = append(cases, "x"+string([]byte{byte(c)})+"y")
	}
	for _, s := range cases {
		if got, want := string(appendQuote([]byte("p "), s)), string(strconv.AppendQuote([]byte("p "), s)); got != want {
			t.Errorf("appendQuote(%q) = %s, want %s", s, got, want)
		}
	}
}

func FuzzAppendQuote(f *testing.F) {
	f.Add("/index.html?a=1")
	f.Add("\"\\\x01é")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(appendQuote(nil, s)), strconv.Quote(s); got != want {
			t.Fatalf("appendQuote(%q) = %s, want %s", s, got, want)
		}
	})
}
