package engine

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Doc documents one Lua function for `tinyfarm doc` and the REPL's :help.
// Its options come from the struct the function decodes with lx.Opts, so
// the documented keys are the accepted keys.
type Doc struct {
	Name    string // "colinux.guest", "g:stop", "task"
	Call    string // the call as the README's tables write it, options included
	Summary string // what it does and returns
	Opts    any    // the options struct (a zero value), or nil
	Example string
	Module  string // set by Docs: the module that documents it, "globals" for the engine's
}

// Documented is implemented by modules that document their functions.
type Documented interface {
	Docs() []Doc
}

// Docs returns the documentation of the engine's globals and of every
// documented module, sorted by name.
func Docs(mods []Module) []Doc {
	out := globalDocs()
	for i := range out {
		out[i].Module = "globals"
	}
	for _, m := range mods {
		if d, ok := m.(Documented); ok {
			for _, doc := range d.Docs() {
				doc.Module = m.Name()
				out = append(out, doc)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Print writes d the way `tinyfarm doc NAME` shows it.
func (d Doc) Print(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n  %s\n", d.Call, strings.ReplaceAll(d.Summary, "\n", "\n  "))
	if d.Opts != nil {
		fmt.Fprintf(w, "\nOptions (unknown keys are errors):\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, o := range lx.Options(d.Opts) {
			def := ""
			switch {
			case o.Required:
				def = "required"
			case o.Default != "":
				def = "default " + o.Default
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", o.Name, o.Type, def, o.Doc)
		}
		tw.Flush()
	}
	if d.Example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", strings.ReplaceAll(strings.TrimSpace(d.Example), "\n", "\n  "))
	}
}

func globalDocs() []Doc {
	return []Doc{
		{Name: "task", Call: "task(name, {tags, on}, fn)", Opts: taskOpts{},
			Summary: "A named step in the recap; returns fn's results. tags select it with --tags/--skip-tags,\non (a guest, a name or a list) with --limit. task(name, fn) works too.",
			Example: `task("nginx on web1", { tags = "web", on = g }, function() nginx.install(g) end)`},
		{Name: "parallel", Call: "parallel(items, fn, {forks, limit})", Opts: parallelOpts{},
			Summary: "Calls fn(item, index) for every item, at most forks at once; returns the results in item order.\nWith --limit, guest items outside it are left out (limit = false keeps them).",
			Example: `local guests = parallel({ "web1", "web2" }, function(name) return colinux.get(name) end)`},
		{Name: "retry", Call: `retry{times=3, delay="1s", backoff=1, max_delay, until}(fn, ...)`, Opts: retryOpts{},
			Summary: "Calls fn(...) until it neither raises nor fails until(results...); raises the last failure\nwith the number of attempts. Attempts beyond the first show in the recap.",
			Example: `retry{ times = 5, delay = "2s", backoff = 2 }(function() g:exec("wget -q -O- localhost") end)`},
		{Name: "handler", Call: "handler(name, fn)",
			Summary: "Defines a handler: notify(name) inside a task that changes something queues it; queued handlers\nrun once each, in definition order, at flush_handlers() or the end of the play, and are kept\nin the state dir until they ran (a failed run's handlers run in the next run).",
			Example: "handler(\"reload nginx\", function() g:exec(\"nginx -s reload\") end)\ntask(\"page\", function() g:write(\"/srv/index.html\", page); notify(\"reload nginx\") end)"},
		{Name: "notify", Call: "notify(name, ...)", Summary: "Inside a task: queue the named handlers if the task changes something."},
		{Name: "flush_handlers", Call: "flush_handlers()", Summary: "Runs the queued handlers now."},
	}
}

// Docs documents the engine's globals and its modules (the REPL's :help).
func (e *Engine) Docs() []Doc { return Docs(e.opts.Modules) }
