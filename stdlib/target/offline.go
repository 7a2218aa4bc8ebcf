package target

import (
	"context"
	"fmt"
	"io"
	"io/fs"
)

// Offline is the target of a guest that does not run yet, as check mode
// sees it: an empty root that refuses changes. name is what Describe says.
func Offline(name string) Target { return offline{name} }

type offline struct{ name string }

func (o offline) Lstat(ctx context.Context, name string) (Entry, error) {
	return Entry{}, fmt.Errorf("lstat %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offline) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("open %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offline) Apply(ctx context.Context, c Change) error {
	return fmt.Errorf("apply %s on %s: the guest is not running", c.Name, o.name)
}

func (o offline) ReadDir(ctx context.Context, name string) ([]Entry, error) {
	return nil, fmt.Errorf("readdir %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offline) Describe() string { return o.name }
