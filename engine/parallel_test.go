package engine_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
)

// barrierModule offers barrier(), which blocks (without the VM lock) until
// n callers have arrived. If parallel() did not overlap blocking calls,
// the first caller would wait forever.
func barrierModule(n int) engine.Module {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return engine.ModuleFunc{ModName: "barrier", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(L.NewFunction(func(L *lua.LState) int {
				err := env.Block(L, func(ctx context.Context) error {
					mu.Lock()
					arrived++
					if arrived == n {
						close(all)
					}
					mu.Unlock()
					select {
					case <-all:
						return nil
					case <-time.After(20 * time.Second):
						return fmt.Errorf("barrier: only %d of %d arrived: parallel does not overlap", arrived, n)
					case <-ctx.Done():
						return ctx.Err()
					}
				})
				if err != nil {
					L.RaiseError("%v", err)
				}
				return 0
			}))
			return 1
		}
	}}
}

func TestParallelOverlapsBlockingCalls(t *testing.T) {
	_, rec, err := run(t, `
local barrier = require("barrier")
local out = parallel({1, 2, 3, 4}, function(x)
  task("item " .. x, function() barrier() end)
  return x
end, {forks = 4})
assert(#out == 4)
`, engine.Options{Modules: []engine.Module{barrierModule(4)}})
	if err != nil {
		t.Fatal(err)
	}
	if rec.OK != 4 {
		t.Errorf("recap %+v, want 4 ok tasks (one per worker)", rec)
	}
}

// BenchmarkParallelSleep shows the overlap: 8 items sleeping 20 ms take
// ~160 ms with forks=1 and ~20 ms with forks=8.
func BenchmarkParallelSleep(b *testing.B) {
	for _, forks := range []int{1, 8} {
		b.Run(fmt.Sprintf("forks=%d", forks), func(b *testing.B) {
			eng, err := engine.New(engine.Options{Modules: []engine.Module{host.Module()}, Reporter: discard{}})
			if err != nil {
				b.Fatal(err)
			}
			defer eng.Close()
			chunk := fmt.Sprintf(`parallel({1,2,3,4,5,6,7,8}, function() require("host").sleep(0.02) end, {forks=%d})`, forks)
			for b.Loop() {
				if _, err := eng.Eval(context.Background(), chunk, "bench", false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNoopTasks is the engine's own overhead per task.
func BenchmarkNoopTasks(b *testing.B) {
	eng, err := engine.New(engine.Options{Reporter: discard{}})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	for b.Loop() {
		if _, err := eng.Eval(context.Background(), `for i = 1, 1000 do task("t", function() end) end`, "bench", false); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Event(engine.Event) {}
