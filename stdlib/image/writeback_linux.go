package image

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// startWriteback starts the writeback of f's dirty pages every few
// milliseconds (sync_file_range, which does not wait) while another
// process fills f, so that the disk works alongside it and its final
// fsync finds little left to do. stop ends it.
func startWriteback(f *os.File) (stop func()) {
	fd := int(f.Fd())
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(4 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tk.C:
				unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	}()
	return func() { close(quit); <-done }
}
