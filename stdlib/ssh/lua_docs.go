package ssh

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "ssh.connect", Call: "ssh.connect{host, port, user, key, host_key, known_hosts, timeout, retries}", Opts: connectOpts{},
			Summary: "A session; host keys are pinned (host_key or known_hosts), never trusted on first use."},
		{Name: "s:run", Call: "s:run(cmd, {sudo, check, stdin, env, timeout, readonly})", Opts: runOpts{},
			Summary: "{code, stdout, stderr}; raises on a non-zero exit unless check = false."},
		{Name: "s:put", Call: "s:put(local, remote, {mode})", Opts: modeOpts{}, Summary: "Copies a local file over SFTP (atomic)."},
		{Name: "s:write", Call: "s:write(path, content, {mode})", Opts: modeOpts{}, Summary: "Writes a remote file over SFTP (atomic)."},
		{Name: "ssh.farm_key", Call: "ssh.farm_key()", Summary: "{public, path, fingerprint} of the farm's ed25519 key."},
	}
}
