package conf

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/golden"
)

// exampleSpec is TINYCORE.md §6's example configuration as a Spec.
func exampleSpec() driver.Spec {
	return driver.Spec{
		Name:      "tc",
		Dir:       `C:\tc\run`,
		MemBytes:  256 << 20,
		Kernel:    "vmlinux",
		Initrds:   []string{"core.gz"},
		Bootcodes: "text",
		Layout:    driver.Frugal,
		Disks:     []driver.Disk{{Path: `C:\tc\tce.img`}, {Path: `C:\tc\TinyCore.iso`}},
		Net: driver.Net{Mode: "user", MAC: "02:00:00:00:00:01",
			Forwards: []driver.Forward{{HostPort: 2222, GuestPort: 22}}},
	}
}

// The example of TINYCORE.md §6, token for token (after the comment line).
const example = `kernel=vmlinux
initrd=core.gz
mem=256
cobd0="C:\tc\tce.img"
cobd1="C:\tc\TinyCore.iso"
eth0=slirp,02:00:00:00:00:01,tcp:2222:22
tce=cobd0 nozswap nortc text
`

func TestRenderExample(t *testing.T) {
	got, err := Render(exampleSpec())
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "example.golden", got)
	first, rest, _ := strings.Cut(got, "\n")
	if first != "# coLinux 0.7 configuration of guest tc (rendered by tinyfarm)" {
		t.Errorf("header = %q", first)
	}
	if rest != example {
		t.Errorf("differs from TINYCORE.md's example:\n%s\nwant:\n%s", rest, example)
	}
	if strings.ContainsAny(got, "<>") {
		t.Errorf("looks like XML, which coLinux 0.7 rejects:\n%s", got)
	}
}

func TestRenderFull(t *testing.T) {
	s := driver.Spec{
		Name:      "web1",
		Dir:       `C:\tinyfarm\guests\web1`,
		MemBytes:  96<<20 + 1, // rounds up to 97
		Kernel:    `C:\Program Files\coLinux\vmlinux`,
		Initrds:   []string{`C:\tc\core.gz`, `C:\tc\squashfs-modules.gz`},
		Bootcodes: "host=web1 tce=vdb/tce home=vdb opt=/dev/vdb1 nortc nodhcp",
		Layout:    driver.Frugal,
		Disks:     []driver.Disk{{Path: `C:\tc\web1.img`}, {Path: `D:\data dir\web1-data.img`}},
		Net: driver.Net{Forwards: []driver.Forward{
			{HostPort: 2201, GuestPort: 22},
			{Proto: "udp", HostPort: 5353, GuestPort: 53},
			{Proto: "tcp", HostAddr: "127.0.0.1", HostPort: 8081, GuestPort: 80},
		}},
		Shares: []driver.Share{
			{Tag: "src", HostPath: `C:\src`},
			{Tag: "cofs0", HostPath: `C:\fixed zero`},
			{Tag: "5", HostPath: `C:\five`},
		},
	}
	got, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "full.golden", got)
	for _, want := range []string{
		`kernel="C:\Program Files\coLinux\vmlinux"` + "\n", // spaces: quoted
		`initrd=C:\tinyfarm\guests\web1\initrd.img` + "\n", // several initrds: the runner's concatenation
		"mem=97\n",
		"eth0=slirp," + MAC("web1") + ",tcp:2201:22/udp:5353:53/tcp:8081:80\n",
		`cofs0="C:\fixed zero"`, `cofs5="C:\five"`, `cofs1="C:\src"`, // explicit indexes first, then the lowest free
		"\nnozswap host=web1 tce=cobd1/tce home=cobd1 opt=/dev/cobd1 nortc nodhcp\n", // vdX mapped, nortc not doubled
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
}

func TestRenderScatterAndNoNet(t *testing.T) {
	s := exampleSpec()
	s.Layout, s.Bootcodes = driver.Scatter, ""
	s.Net = driver.Net{Mode: "none"}
	s.MemBytes = 0
	got, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(got, "\nroot=/dev/cobd0 nozswap nortc\n") || strings.Contains(got, "eth0") || strings.Contains(got, "mem=") {
		t.Errorf("scatter/no net/default mem:\n%s", got)
	}
	s.Bootcodes = "root=/dev/cobd1 ro"
	got, _ = Render(s)
	if !strings.HasSuffix(got, "\nnozswap nortc root=/dev/cobd1 ro\n") {
		t.Errorf("explicit root was overridden:\n%s", got)
	}
}

func TestRenderMACAlwaysSet(t *testing.T) {
	s := exampleSpec()
	s.Net.MAC = ""
	got, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "eth0=slirp,"+MAC("tc")+",tcp:2222:22\n") {
		t.Errorf("no fixed MAC:\n%s", got)
	}
	if MAC("a") == MAC("b") || MAC("a") != MAC("a") || !strings.HasPrefix(MAC("a"), "02:") {
		t.Errorf("MAC: %s %s", MAC("a"), MAC("b"))
	}
	s.Net = driver.Net{Mode: "bridge", Bridge: "TAP-Win32 Adapter"}
	got, err = Render(s)
	if err != nil || !strings.Contains(got, `eth0=tuntap,"TAP-Win32 Adapter",`+MAC("tc")+"\n") {
		t.Errorf("bridge: %v\n%s", err, got)
	}
}

func TestRenderCOBDLimit(t *testing.T) {
	s := exampleSpec()
	s.Disks = nil
	for i := 0; i < MaxCOBD; i++ {
		s.Disks = append(s.Disks, driver.Disk{Path: `C:\d\` + strconv.Itoa(i) + ".img"})
	}
	got, err := Render(s)
	if err != nil {
		t.Fatalf("32 disks: %v", err)
	}
	if !strings.Contains(got, "cobd31=\"C:\\d\\31.img\"\n") {
		t.Errorf("cobd31 missing:\n%s", got)
	}
	s.Disks = append(s.Disks, driver.Disk{Path: `C:\d\32.img`})
	if _, err := Render(s); err == nil || !strings.Contains(err.Error(), "33, coLinux has cobd0..cobd31") {
		t.Errorf("33 disks: err = %v", err)
	}
}

func TestRenderErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*driver.Spec)
		want string
	}{
		{"kernel", func(s *driver.Spec) { s.Kernel = "" }, "kernel: required"},
		{"dup cobd via bootcode", func(s *driver.Spec) { s.Bootcodes = `cobd0=C:\x.img` }, `cobd0= is a coLinux configuration key`},
		{"dup mem via bootcode", func(s *driver.Spec) { s.Bootcodes = "mem=64 text" }, `mem= is a coLinux configuration key`},
		{"eth via bootcode", func(s *driver.Spec) { s.Bootcodes = "eth1=slirp" }, `eth1= is a coLinux configuration key`},
		{"bad token", func(s *driver.Spec) { s.Bootcodes = "-x" }, `bootcode "-x"`},
		{"quote in path", func(s *driver.Spec) { s.Disks[0].Path = `C:\a"b.img` }, "holds a quote"},
		{"read-only", func(s *driver.Spec) { s.Disks[1].ReadOnly = true }, "read-only disk is not supported"},
		{"dup cofs", func(s *driver.Spec) {
			s.Shares = []driver.Share{{Tag: "3", HostPath: `C:\a`}, {Tag: "cofs3", HostPath: `C:\b`}}
		}, "duplicate index cofs3 (share 0 has it)"},
		{"cofs31 initrd", func(s *driver.Spec) { s.Shares = []driver.Share{{Tag: "31", HostPath: `C:\a`}} }, "cofs31 is taken by the initrd"},
		{"cofs range", func(s *driver.Spec) { s.Shares = []driver.Share{{Tag: "32", HostPath: `C:\a`}} }, "cofs32 out of range"},
		{"proto", func(s *driver.Spec) { s.Net.Forwards[0].Proto = "icmp" }, `proto "icmp"`},
		{"port", func(s *driver.Spec) { s.Net.Forwards[0].GuestPort = 70000 }, "ports 2222->70000"},
		{"bind addr", func(s *driver.Spec) { s.Net.Forwards[0].HostAddr = "10.0.0.1" }, "no bind address"},
		{"mac", func(s *driver.Spec) { s.Net.MAC = "nope" }, `mac "nope"`},
		{"mode", func(s *driver.Spec) { s.Net.Mode = "vde" }, `net mode "vde"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := exampleSpec()
			c.mod(&s)
			out, err := Render(s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if out != "" {
				t.Errorf("output despite the error: %q", out)
			}
			if !strings.HasPrefix(err.Error(), "colinux conf tc: ") {
				t.Errorf("error not wrapped with op and subject: %v", err)
			}
		})
	}
	s := exampleSpec()
	s.Disks[0].ReadOnly = true
	if _, err := Render(s); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("read-only disk: %v, want ErrUnsupported", err)
	}
	// All problems are reported at once.
	s = exampleSpec()
	s.Kernel, s.Net.MAC = "", "x"
	_, err := Render(s)
	if err == nil || !strings.Contains(err.Error(), "kernel") || !strings.Contains(err.Error(), `mac "x"`) {
		t.Errorf("joined errors: %v", err)
	}
}

// The shares tokens must read back: a tiny tokenizer following coLinux's
// rules (whitespace-separated, "quoted" values, quotes stripped, # to end
// of line) finds each key once.
func TestRenderTokenizes(t *testing.T) {
	s := exampleSpec()
	s.Disks[0].Path = `C:\My Disks\tce.img`
	got, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, tok := range tokens(got) {
		k, v, ok := strings.Cut(tok, "=")
		if !ok || !keyRE.MatchString(tok) {
			continue
		}
		if _, dup := seen[k]; dup {
			t.Errorf("duplicate key %s", k)
		}
		seen[k] = v
	}
	if seen["cobd0"] != `C:\My Disks\tce.img` || seen["kernel"] != "vmlinux" || seen["mem"] != "256" {
		t.Errorf("tokens read back: %v", seen)
	}
}

func tokens(text string) []string {
	var out []string
	var cur strings.Builder
	inQ, inTok := false, false
	flush := func() {
		if inTok {
			out = append(out, cur.String())
			cur.Reset()
			inTok = false
		}
	}
	for _, line := range strings.Split(text, "\n") {
		for _, r := range line {
			switch {
			case r == '"':
				inQ, inTok = !inQ, true
			case inQ:
				cur.WriteRune(r)
			case r == '#':
				goto eol
			case r == ' ' || r == '\t':
				flush()
			default:
				cur.WriteRune(r)
				inTok = true
			}
		}
	eol:
		flush()
	}
	return out
}
