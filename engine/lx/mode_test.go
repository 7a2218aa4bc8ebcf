package lx

import (
	"io/fs"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestParseMode(t *testing.T) {
	for _, c := range []struct {
		in   string
		want fs.FileMode
	}{
		{"0644", 0o644},
		{"644", 0o644},
		{"0", 0},
		{"0000", 0},
		{"00644", 0o644},
		{"755", 0o755},
		{"0600", 0o600},
		{"4755", fs.ModeSetuid | 0o755},
		{"2775", fs.ModeSetgid | 0o775},
		{"1777", fs.ModeSticky | 0o777},
		{"07777", fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky | 0o777},
	} {
		if got, err := ParseMode(c.in); err != nil || got != c.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"", "999", "8", "-1", "+644", " 644", "644 ", "0644x", "0o644", "0x1a4",
		"u+rwx", "rw-r--r--", "6.44", "1e3", "1_000", "10000", "17777", "77777777777777",
	} {
		_, err := ParseMode(in)
		if err == nil {
			t.Errorf("ParseMode(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), `"`+in+`"`) || !strings.Contains(err.Error(), "0644") {
			t.Errorf("ParseMode(%q): error %q should name the value and the fix", in, err)
		}
	}
}

// A Lua number reaches a string option as its decimal text: 644 is 0644
// (as chmod reads it), -1 and 6.5 are refused.
func TestModeOptionFromNumber(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for num, want := range map[float64]fs.FileMode{644: 0o644, 4755: fs.ModeSetuid | 0o755, -1: 0, 6.5: 0} {
		tbl := L.NewTable()
		tbl.RawSetString("mode", lua.LNumber(num))
		var o struct {
			Mode string `lua:"mode"`
		}
		if err := DecodeTable(tbl, &o); err != nil {
			t.Fatal(err)
		}
		got, err := ParseMode(o.Mode)
		if want == 0 && err == nil || want != 0 && (err != nil || got != want) {
			t.Errorf("mode = %v: got %v, %v; want %v", num, got, err, want)
		}
	}
}
