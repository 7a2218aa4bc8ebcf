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
			fmt.Fprintln(out, ":guests lists the farm's guests")
			return true
		}
		for _, d := range docs {
			if d.Name == arg {
				d.Print(out)
				return true
			}
		}
		fmt.Fprintf(errw, ":help: nothing documented as %q (:help lists the names)\n", arg)
	case "guests":
		_, err := eng.Eval(ctx, `for _, g in ipairs(require("colinux").list()) do
  print(string.format("%-12s %-7s %-9s %s", g.name, g.driver, g.state, g.ip))
end`, "repl", false)
		if err != nil {
			fmt.Fprintln(errw, err.Error())
		}
	default:
		fmt.Fprintf(errw, "unknown command :%s (:help, :guests)\n", cmd)
	}
	return true
}
