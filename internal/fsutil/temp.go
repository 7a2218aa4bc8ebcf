package fsutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TempPrefix starts every temporary name TempName makes.
const TempPrefix = ".tf-"

// TempName returns a temporary name, in the same directory, for a file
// being written as base: ".tf-<pid>-<random>-<base>" (base cut to 40
// bytes). The writer's pid in the name lets a later run tell the
// leftovers of a writer that was killed (StaleTemp) from a write in
// progress in another process.
func TempName(base string) string {
	var b [6]byte
	rand.Read(b[:])
	if len(base) > 40 {
		base = base[:40]
	}
	return TempPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:]) + "-" + base
}

// StaleTemp reports whether name (a base name) is a TempName whose writer
// no longer runs: what a process killed between creating and renaming
// its temporary file leaves behind.
func StaleTemp(name string) bool {
	rest, ok := strings.CutPrefix(name, TempPrefix)
	if !ok {
		return false
	}
	p, rest, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	if _, _, ok := strings.Cut(rest, "-"); !ok {
		return false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return !processAlive(pid)
}

// RemoveStaleTemps removes the stale temporary files (StaleTemp) of base
// in dir, or all of them when base is "". Errors are ignored: a leftover
// that stays is harmless and is tried again by the next write.
func RemoveStaleTemps(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if StaleTemp(n) && (base == "" || tempBase(n) == truncBase(base)) {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// tempBase returns the base a TempName was made for (cut as TempName cuts).
func tempBase(name string) string {
	rest := strings.TrimPrefix(name, TempPrefix)
	_, rest, _ = strings.Cut(rest, "-")
	_, rest, _ = strings.Cut(rest, "-")
	return rest
}

func truncBase(base string) string {
	if len(base) > 40 {
		return base[:40]
	}
	return base
}

// PidPrefix returns prefix followed by this process's pid and a dash: the
// start of a temporary directory name (os.MkdirTemp(dir, PidPrefix(p)))
// that RemoveStale can recognise once this process is gone.
func PidPrefix(prefix string) string { return prefix + strconv.Itoa(os.Getpid()) + "-" }

// RemoveStale removes (with everything below) the entries of dir named
// PidPrefix(prefix)+"..." by a process that no longer runs: the scratch
// trees of a run that was killed. Errors are ignored.
func RemoveStale(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		p, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// Alive reports whether the process pid runs (on Windows: always true).
func Alive(pid int) bool { return processAlive(pid) }
