package repl

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tinyfarm/tinyfarm/engine"
)

// command runs a REPL command (a line starting with ":") and reports
// whether line was one. :help [NAME] shows the text of `tinyfarm doc`,
// :guests lists the farm's guests.
func command(ctx context.Context, eng *engine.Engine, line string, out, errw io.Writer) bool {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, ":") {
		return false
	}
	cmd, arg, _ := strings.Cut(line[1:], " ")
	arg = strings.TrimSpace(arg)
	switch cmd {
	case "help", "h":
		docs := eng.Docs()
		if arg == "" {
			fmt.Fprintln(out, ":help NAME shows a function (options, defaults, an example); documented:")
			var names []string
			for _, d := range docs {
				names = append(names, d.Name)
			}
			fmt.Fprintln(out, "  "+strings.Join(names, " "))
			fmt.Fprintln(out, ":guests lists the farm's guests, :reload NAME loads an edited recipe again")
			return true
		}
		for _, d := range docs {
			if d.Name == arg {
				d.Print(out)
				return true
			}
		}
		fmt.Fprintf(errw, ":help: nothing documented as %q (:help lists the names)\n", arg)
	case "reload":
		if arg == "" {
			fmt.Fprintln(errw, ":reload NAME: load a required recipe again after editing it (:reload lib.nginx)")
			return true
		}
		// The new module replaces the old in package.loaded; a global of the
		// same name (a module the REPL preloads) follows it.
		_, err := eng.Eval(ctx, fmt.Sprintf(`package.loaded[%[1]q] = nil
local m = require(%[1]q)
if rawget(_G, %[1]q) ~= nil then _G[%[1]q] = m end`, arg), "repl", false)
		if err != nil {
			fmt.Fprintln(errw, err.Error())
			return true
		}
		fmt.Fprintf(out, "reloaded %s\n", arg)
	case "guests":
		_, err := eng.Eval(ctx, `for _, g in ipairs(require("colinux").list()) do
  print(string.format("%-12s %-7s %-9s %s", g.name, g.driver, g.state, g.ip))
end`, "repl", false)
		if err != nil {
			fmt.Fprintln(errw, err.Error())
		}
	default:
		fmt.Fprintf(errw, "unknown command :%s (:help, :guests, :reload)\n", cmd)
	}
	return true
}
