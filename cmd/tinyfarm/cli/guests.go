package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// guestRow is one line of `tinyfarm guests`.
type guestRow struct {
	Name      string `json:"name"`
	Driver    string `json:"driver"`
	State     string `json:"state"`
	IP        string `json:"ip"`
	Mem       string `json:"mem"`
	PID       int    `json:"pid,omitempty"`
	Isolation string `json:"isolation,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Autostart bool   `json:"autostart,omitempty"`
	// RestartNeeded names what the definition changed that the running
	// guest only gets by a restart (as LXD reports it).
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

func newGuestsCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	var asJSON, inCluster bool
	cmd := &cobra.Command{
		Use:     "guests",
		Aliases: []string{"ps"},
		Short:   "List the farm's guests and their state",
		Example: `  tinyfarm guests
  tinyfarm ps --json
  tinyfarm guests --cluster`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if inCluster {
				return clusterGuests(ctx, stdout, stderr, asJSON)
			}
			fm := farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
			defs, err := fm.List()
			if err != nil {
				return err
			}
			rows := make([]guestRow, 0, len(defs))
			for _, d := range defs {
				g, err := fm.Guest(ctx, d.Name)
				if err != nil {
					return err
				}
				st, err := g.Status(ctx)
				r := guestRow{Name: d.Name, Driver: d.Driver, State: string(st.State), PID: st.PID, Reason: st.Reason, Isolation: st.Isolation, Mem: farm.HumanSize(d.MemBytes)}
				if err != nil {
					r.State, r.Reason = "unknown", err.Error()
				}
				r.IP, _, _ = strings.Cut(d.IP, "/")
				r.Autostart, r.RestartNeeded = d.Autostart, g.RestartNeeded(ctx)
				rows = append(rows, r)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintln(stdout, "no guests (define one with colinux.guest{...} in a playbook)")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tDRIVER\tSTATE\tIP\tMEM\tPID\tISOLATION\tNOTE")
			for _, r := range rows {
				pid := "-"
				if r.PID > 0 {
					pid = fmt.Sprint(r.PID)
				}
				iso := r.Isolation
				if i := strings.Index(iso, " ("); i > 0 {
					iso = iso[:i]
				}
				if iso == "" {
					iso = "-"
				}
				var note []string
				if r.Reason != "" {
					note = append(note, r.Reason)
				}
				if len(r.RestartNeeded) > 0 {
					note = append(note, "restart needed: "+strings.Join(r.RestartNeeded, ", "))
				}
				if r.Autostart {
					note = append(note, "autostart")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Driver, r.State, r.IP, r.Mem, pid, iso, strings.Join(note, "; "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&inCluster, "cluster", false, "every guest of this host's cluster, with its host")
	return cmd
}
