package lockfile

import (
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestLockExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(p)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := false
	done := make(chan struct{})
	go func() {
		u2, err := Lock(p) // a second open file description: blocks until released
		if err == nil {
			mu.Lock()
			got = true
			mu.Unlock()
			u2()
		}
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	early := got
	mu.Unlock()
	if early {
		t.Fatal("second Lock succeeded while the first was held")
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock never got the lock after release")
	}
}
