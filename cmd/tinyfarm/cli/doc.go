package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
)

func newDocCmd(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doc [MODULE | NAME]",
		Short: "Documentation of the Lua functions: options, defaults, an example",
		Long: `doc lists the documented modules; doc MODULE lists its functions; doc NAME
shows one function: its call, what it does, its options (exactly the keys its
strict option decoder accepts) with types and defaults, and an example.`,
		Example: `  tinyfarm doc
  tinyfarm doc colinux
  tinyfarm doc colinux.guest
  tinyfarm doc g:exec`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			docs := engine.Docs(all.Modules())
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			defer tw.Flush()
			if len(args) == 0 {
				count := map[string]int{}
				var order []string
				for _, d := range docs {
					m := d.Module
					if count[m] == 0 {
						order = append(order, m)
					}
					count[m]++
				}
				for _, m := range order {
					fmt.Fprintf(tw, "%s\t%d functions\n", m, count[m])
				}
				fmt.Fprintln(tw, "\ntinyfarm doc MODULE lists them, tinyfarm doc NAME shows one")
				return nil
			}
			var names []string
			for _, d := range docs {
				if d.Name == args[0] {
					d.Print(stdout)
					return nil
				}
				names = append(names, d.Name)
			}
			found := false
			for _, d := range docs {
				if d.Module == args[0] {
					first, _, _ := strings.Cut(d.Summary, "\n")
					fmt.Fprintf(tw, "%s\t%s\n", d.Name, first)
					found = true
				}
			}
			if found {
				return nil
			}
			hint := ""
			best := 4
			for _, n := range names {
				if d := lx.Distance(args[0], n); d < best {
					best, hint = d, fmt.Sprintf(" (did you mean %q?)", n)
				}
			}
			return usageErr(stderr, fmt.Errorf("doc: nothing documented as %q%s; tinyfarm doc lists the modules", args[0], hint))
		},
	}
}
