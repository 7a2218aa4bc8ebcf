package host

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "host.run", Call: "host.run(cmd, {check, stdin, env, dir, timeout, readonly})", Opts: runOpts{},
			Summary: "{code, stdout, stderr} of a command on the machine tinyfarm runs on; raises on a non-zero\nexit unless check = false; readonly commands are ok and run in check mode.",
			Example: `local r = host.run("df -h /", { readonly = true })`},
		{Name: "host.write", Call: "host.write(path, content, {mode})", Opts: writeOpts{},
			Summary: "A host file, written atomically; ok when equal, a diff in check mode."},
		{Name: "host.read", Call: "host.read(path)", Summary: "A host file's content, or nil when it does not exist."},
		{Name: "host.sleep", Call: "host.sleep(s)", Summary: "Waits s seconds (or a duration like \"2s\"); Ctrl-C cancels it."},
	}
}
