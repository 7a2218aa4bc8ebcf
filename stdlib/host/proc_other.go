//go:build !unix

package host

import "os/exec"

func killGroupOnCancel(cmd *exec.Cmd) {}

func signalCode(ee *exec.ExitError) int { return ee.ExitCode() }
