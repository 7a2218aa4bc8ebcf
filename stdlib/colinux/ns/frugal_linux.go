package ns

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// frugalRoot gives a frugal guest a fresh copy of core in tmpfs, with the
// guest's disk mounted for Tiny Core's own persistence (tce/, home/, opt/).
func frugalRoot(s *monitorSpec, newRoot string) error {
	size := "size=50%"
	if s.MemBytes > 0 {
		size = fmt.Sprintf("size=%d", s.MemBytes/2)
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=755,"+size); err != nil {
		return fmt.Errorf("frugal root: tmpfs: %w", err)
	}
	return fmt.Errorf("frugal root: %w", errFrugalTODO)
}
