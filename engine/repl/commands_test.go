package repl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
)

func TestHelpCommandShowsTheDocs(t *testing.T) {
	eng, err := engine.New(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var out, errb bytes.Buffer
	if !command(context.Background(), eng, ":help retry", &out, &errb) {
		t.Fatal(":help not taken as a command")
	}
	for _, want := range []string{"retry{times=3", "backoff", "default 1s", "Example:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf(":help retry lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	command(context.Background(), eng, ":help", &out, &errb)
	if !strings.Contains(out.String(), "flush_handlers") {
		t.Errorf(":help lists:\n%s", out.String())
	}
	command(context.Background(), eng, ":help nope", &out, &errb)
	command(context.Background(), eng, ":nope", &out, &errb)
	if !strings.Contains(errb.String(), `nothing documented as "nope"`) || !strings.Contains(errb.String(), "unknown command :nope") {
		t.Errorf("errors: %s", errb.String())
	}
	if command(context.Background(), eng, "x = 1", &out, &errb) {
		t.Error("Lua taken as a command")
	}
}

func TestReloadLoadsAnEditedRecipe(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(v string) {
		os.WriteFile(filepath.Join(dir, "lib", "r.lua"), []byte(`return { v = "`+v+`" }`), 0o644)
	}
	write("1")
	eng, err := engine.New(engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	if _, err := eng.Eval(ctx, `r = require("lib.r")`, "repl", false); err != nil {
		t.Fatal(err)
	}
	write("2")
	var out, errb bytes.Buffer
	command(ctx, eng, ":reload lib.r", &out, &errb)
	vals, err := eng.Eval(ctx, `require("lib.r").v`, "repl", true)
	if err != nil || len(vals) != 1 || vals[0].String() != "2" || !strings.Contains(out.String(), "reloaded lib.r") {
		t.Errorf("after :reload: %v %v, out %q err %q", vals, err, out.String(), errb.String())
	}
}
