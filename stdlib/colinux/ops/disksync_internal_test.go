package ops

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiveChunksAnswers: the far side of a copy applies data and zero
// frames and answers, with chunk sums, the sha256 of each chunk as read
// back from the file in frame order (what syncChunks verifies); without,
// the whole file's sha256 (what a tinyfarm from before chunk sums reads).
func TestReceiveChunksAnswers(t *testing.T) {
	const chunk = 4096
	data := bytes.Repeat([]byte("tinyfarm"), chunk/8)
	var stream bytes.Buffer
	writeFrame(&stream, 'D', chunk, data)                  // the second chunk
	writeFrame(&stream, 'Z', 2*chunk, make([]byte, chunk)) // the third, zeros
	writeFrame(&stream, 'E', 0, nil)
	want := make([]byte, 3*chunk)
	copy(want[chunk:], data)

	for _, chunkSums := range []bool{true, false} {
		path := filepath.Join(t.TempDir(), "disks", "g.img")
		os.MkdirAll(filepath.Dir(path), 0o700)
		// What an earlier pass left there: non-zero bytes where zeros go now.
		os.WriteFile(path, bytes.Repeat([]byte{7}, 3*chunk), 0o600)
		os.WriteFile(migratingMark(path), nil, 0o600)
		var out bytes.Buffer
		if err := ReceiveChunks(path, int64(len(want)), bytes.NewReader(stream.Bytes()), &out, chunkSums); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		want[0] = 7 // the first chunk was not sent: it keeps what was there
		for i := 1; i < chunk; i++ {
			want[i] = 7
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("chunk sums %v: the file is not what the frames make", chunkSums)
		}
		if chunkSums {
			d, z := sha256.Sum256(data), sha256.Sum256(make([]byte, chunk))
			if w := "size 12288\n" + hex.EncodeToString(d[:]) + "\n" + hex.EncodeToString(z[:]) + "\n"; out.String() != w {
				t.Errorf("answer with chunk sums:\n%s\nwant\n%s", out.String(), w)
			}
		} else if s := sha256.Sum256(want); strings.TrimSpace(out.String()) != "sha256 "+hex.EncodeToString(s[:]) {
			t.Errorf("answer without chunk sums: %q", out.String())
		}
	}
}
