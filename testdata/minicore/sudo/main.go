// Command sudo is the minicore release's password-less root escalation: a
// tiny setuid-root program (installed as /usr/bin/sudo, mode 4755) that runs
// a command as root for users granted NOPASSWD in /etc/sudoers, either by
// name ("tc ALL=NOPASSWD: ALL") or by group ("%staff ALL=NOPASSWD: ALL").
//
// Supported: sudo [-E] [-H] [-n] [-S] [-u root] [-s | -i | CMD ARGS...].
// Options other than these are rejected. It is a test fixture for the mini
// Tiny Core release, not a general sudo.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "sudo: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	shell := false
opts:
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		args = args[1:]
		switch a {
		case "--":
			break opts
		case "-E", "-H", "-n", "-S":
		case "-s", "-i":
			shell = true
		case "-u":
			if len(args) == 0 || (args[0] != "root" && args[0] != "0" && args[0] != "#0") {
				return fmt.Errorf("only -u root is supported")
			}
			args = args[1:]
		default:
			return fmt.Errorf("unsupported option %s", a)
		}
	}
	uid := os.Getuid()
	if uid != 0 {
		ok, err := allowed(uid)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("user %d is not allowed to run commands as root", uid)
		}
	}
	if err := syscall.Setgroups([]int{0}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(0, 0, 0); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		return fmt.Errorf("setresuid (is /usr/bin/sudo setuid root?): %w", err)
	}
	env := append(os.Environ(), "SUDO_UID="+strconv.Itoa(uid), "SUDO_USER="+userName(uid))
	if shell || len(args) == 0 {
		if !shell {
			return fmt.Errorf("usage: sudo [-s | CMD ARGS...]")
		}
		sh := "/bin/sh"
		argv := []string{"sh"}
		if len(args) > 0 {
			argv = append(argv, "-c", strings.Join(args, " "))
		}
		return exec(sh, argv, env)
	}
	path, err := lookPath(args[0])
	if err != nil {
		return err
	}
	return exec(path, args, env)
}

func exec(path string, argv, env []string) error {
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}

// allowed reports whether uid may escalate: its name or one of its groups
// has a NOPASSWD line in /etc/sudoers.
func allowed(uid int) (bool, error) {
	name := userName(uid)
	groups, err := syscall.Getgroups()
	if err != nil {
		return false, fmt.Errorf("getgroups: %w", err)
	}
	groups = append(groups, os.Getgid())
	gnames := map[string]bool{}
	for _, g := range groups {
		gnames[groupName(g)] = true
	}
	f, err := os.Open("/etc/sudoers")
	if err != nil {
		return false, fmt.Errorf("open sudoers: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' || !strings.Contains(line, "NOPASSWD") {
			continue
		}
		who := strings.Fields(line)[0]
		if who == name || (strings.HasPrefix(who, "%") && gnames[who[1:]]) {
			return true, nil
		}
	}
	return false, s.Err()
}

func userName(uid int) string  { return lookup("/etc/passwd", uid) }
func groupName(gid int) string { return lookup("/etc/group", gid) }

// lookup maps an id to its name through a passwd-format file (field 3).
func lookup(file string, id int) string {
	f, err := os.Open(file)
	if err != nil {
		return strconv.Itoa(id)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Split(s.Text(), ":")
		if len(fields) > 2 && fields[2] == strconv.Itoa(id) {
			return fields[0]
		}
	}
	return strconv.Itoa(id)
}
