package ns

import (
	"crypto/sha256"
	"encoding/hex"
)

// HostVeth is the host-side name of a guest's veth: "tf-" + a hash of the
// guest instance (driver.Spec.Instance), because interface names are
// limited to 15 bytes. Exported for checks that must tell one farm's
// interfaces from another's.
func HostVeth(instance string) string {
	h := sha256.Sum256([]byte(instance))
	return "tf-" + hex.EncodeToString(h[:])[:10]
}
