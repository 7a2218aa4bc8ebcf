package cluster

import (
	"context"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
)

// TestLua runs testdata/cluster_test.lua (in a normal run, then in check
// mode) with require("cluster") connected
// to a real embedded member through the state dir's cluster config.
func TestLua(t *testing.T) {
	state := t.TempDir()
	a := hostConfig(t, "a", "127.0.0.1")
	a.Dir = Dir(state)
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	bc := *a
	bc.Host = "b"
	b, err := Connect(context.Background(), &bc)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.Register(context.Background(), Facts{Mem: 2 << 30, Committed: 512 << 20, CPUs: 2, Drivers: []string{"ns", "qemu"}}); err != nil {
		t.Fatal(err)
	}
	for _, check := range []bool{false, true} {
		t.Run(map[bool]string{false: "run", true: "check"}[check], func(t *testing.T) {
			luatest.Run(t, "testdata/cluster_test.lua", engine.Options{Modules: []engine.Module{Module()}, StateDir: state, Check: check})
		})
	}
}
