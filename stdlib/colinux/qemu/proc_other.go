//go:build !linux

package qemu

import (
	"os/exec"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// The runner needs /proc and sessions; only the renderer works elsewhere.
const supported = false

func detach(*exec.Cmd) {}

func procAlive(int, string) bool { return false }

func killPID(int) error {
	return driver.Unsupported("qemu", "kill", "the qemu runner needs Linux")
}

func procExiting(int) bool { return false }
