package lx

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type sample struct {
	Name    string            `lua:"name,required"`
	Mem     Size              `lua:"mem"`
	Timeout time.Duration     `lua:"timeout"`
	Tags    []string          `lua:"tags"`
	Env     map[string]string `lua:"env"`
	Count   int               `lua:"count"`
	On      *bool             `lua:"on"`
}

func decode(t *testing.T, src string) (sample, error) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	if err := L.DoString("return " + src); err != nil {
		t.Fatal(err)
	}
	var s sample
	err := DecodeTable(L.Get(-1).(*lua.LTable), &s)
	return s, err
}

func TestDecodeTable(t *testing.T) {
	s, err := decode(t, `{name="web1", mem="128M", timeout="1m", tags="a", env={A=1}, count=3, on=false}`)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web1" || s.Mem != 128<<20 || s.Timeout != time.Minute || len(s.Tags) != 1 || s.Env["A"] != "1" || s.Count != 3 || s.On == nil || *s.On {
		t.Errorf("decoded %+v", s)
	}
	s, err = decode(t, `{name="x", timeout=1.5, tags={"a","b"}}`)
	if err != nil || s.Timeout != 1500*time.Millisecond || strings.Join(s.Tags, ",") != "a,b" || s.On != nil {
		t.Errorf("decoded %+v, %v", s, err)
	}
	for src, want := range map[string]string{
		`{name="x", nmae="y"}`:       `unknown option "nmae" (did you mean "name"? valid: count, env, mem, name, on, tags, timeout)`,
		`{mem="1G"}`:                 `option name is required`,
		`{name="x", count=1.5}`:      `option count: want integer, got number`,
		`{name="x", mem="lots"}`:     `option mem: invalid size "lots"`,
		`{name="x", tags={1, {}}}`:   `option tags: item 2: want string, got table`,
		`{name="x", timeout="soon"}`: `option timeout: invalid duration "soon"`,
		`{name="x", [1]="pos"}`:      `option keys must be names`,
	} {
		if _, err := decode(t, src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", src, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"4096": 4096, "128M": 128 << 20, "1G": 1 << 30, "64MiB": 64 << 20, "1.5k": 1536, "2T": 2 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1M", "12X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func TestKindOf(t *testing.T) {
	if k := KindOf(fs.ErrNotExist); k != KindNotFound {
		t.Errorf("not exist -> %s", k)
	}
	if k := KindOf(WithKind(errors.New("x"), KindUnsupported)); k != KindUnsupported {
		t.Errorf("WithKind -> %s", k)
	}
	if k := KindOf(errors.New("x")); k != KindError {
		t.Errorf("plain -> %s", k)
	}
}

func TestFromGoToGoRoundTrip(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	type rec struct {
		A int    `lua:"a"`
		B string `lua:"b,omitempty"`
	}
	v := FromGo(L, map[string]any{"list": []any{int64(1), "two", true}, "rec": rec{A: 7}})
	got := ToGo(v).(map[string]any)
	list := got["list"].([]any)
	if list[0] != int64(1) || list[1] != "two" || list[2] != true {
		t.Errorf("list %v", list)
	}
	r := got["rec"].(map[string]any)
	if r["a"] != int64(7) || r["b"] != nil {
		t.Errorf("rec %v", r)
	}
}

// Options of an embedded struct are options of the outer one.
func TestDecodeTableEmbedded(t *testing.T) {
	type shared struct {
		Timeout time.Duration `lua:"timeout"`
	}
	type outer struct {
		Name string `lua:"name,required"`
		shared
	}
	L := lua.NewState()
	defer L.Close()
	if err := L.DoString(`return {name="a", timeout=2}`); err != nil {
		t.Fatal(err)
	}
	var o outer
	if err := DecodeTable(L.Get(-1).(*lua.LTable), &o); err != nil || o.Timeout != 2*time.Second || o.Name != "a" {
		t.Fatalf("got %+v, %v", o, err)
	}
	if err := L.DoString(`return {name="a", timeuot=2}`); err != nil {
		t.Fatal(err)
	}
	err := DecodeTable(L.Get(-1).(*lua.LTable), &o)
	if err == nil || !strings.Contains(err.Error(), `did you mean "timeout"`) {
		t.Fatalf("misspelt embedded option: %v", err)
	}
}
