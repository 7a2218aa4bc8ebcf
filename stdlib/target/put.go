package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// PutResult says what PutFile did, or would do in check mode.
type PutResult struct {
	Changed bool
	Diff    string // unified diff of the content ("" when only the mode changed)
	Detail  string // "mode 0600 -> 0644" when the permission bits change
}

// PutFile makes name in t hold exactly data with permission bits perm:
// it reads what is there and, unless content and permission bits are
// equal already, writes it (atomically: t's Apply) owned by uid:gid.
// With check it reads and compares only.
func PutFile(ctx context.Context, t Target, name string, data []byte, perm fs.FileMode, uid, gid int, check bool) (PutResult, error) {
	var old []byte
	var oldMode fs.FileMode
	exists := false
	e, err := t.Lstat(ctx, name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return PutResult{}, err
	default:
		exists, oldMode = true, e.Mode
		if old, err = ReadFile(ctx, t, name); err != nil {
			return PutResult{}, err
		}
	}
	if exists && bytes.Equal(old, data) && oldMode.Perm() == perm.Perm() {
		return PutResult{}, nil
	}
	res := PutResult{Changed: true, Diff: fsutil.Diff(name, old, data)}
	if exists && oldMode.Perm() != perm.Perm() {
		res.Detail = fmt.Sprintf("mode %04o -> %04o", oldMode.Perm(), perm.Perm())
	}
	if !check {
		if err := WriteFile(ctx, t, name, data, perm, uid, gid); err != nil {
			return res, err
		}
	}
	return res, nil
}
