package main

import (
	"context"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tinyfarm/tinyfarm/cmd/tinyfarm/cli"
)

// TestMain makes the test binary double as the tinyfarm command for the
// testscript files, so they exercise the real CLI end to end.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"tinyfarm": func() {
			os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("TINYFARM_HOME", env.WorkDir+"/state")
			return nil
		},
	})
}
