package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// proxyGCPercent is the GC target of "proxy serve" when GOGC is not set:
// the proxy's live heap is a few MiB, so trading memory for less GC work
// is cheap (about +15% requests/s on the proxy benchmark).
const proxyGCPercent = 400

func newProxyCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Serve the guests' sites on one port by host name, list the routes",
		Long: `The proxy routes HTTP requests by Host header, and TCP forwards, to the
guests, from the route registry that playbooks fill with proxy.vhost and
proxy.forward ($TINYFARM_HOME/proxy/routes.json). "proxy serve" is the
long-lived embedded proxy; it reloads the registry when it changes.
Playbooks can instead render it for nginx with proxy.nginx.`,
	}

	var (
		listen, accessLog string
		limits            proxy.Limits
	)
	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the embedded reverse proxy until SIGTERM or Ctrl-C",
		Long: `serve runs the embedded reverse proxy on --listen, routing by the registry
and reloading it live. SIGTERM or Ctrl-C stops accepting, lets in-flight
requests finish (up to 30s) and exits 0. It prints the bound address on
stderr ("--listen 127.0.0.1:0" picks a free port). proxy.serve in a
playbook runs the same proxy only while the playbook runs.`,
		Example: `  tinyfarm proxy serve
  tinyfarm proxy serve --listen 127.0.0.1:8080 --access-log -
  tinyfarm proxy serve --access-log /var/log/tinyfarm-access.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return proxyServe(ctx, listen, accessLog, limits, stdout, stderr)
		},
	}
	serveCmd.Flags().StringVar(&listen, "listen", ":80", "HTTP listen address")
	serveCmd.Flags().StringVar(&accessLog, "access-log", "", `access log FILE (appended to), or "-" for stdout; default none`)
	for _, f := range limits.Fields() {
		if f.Dur != nil {
			serveCmd.Flags().DurationVar(f.Dur, f.Flag, 0, f.Usage)
		} else {
			serveCmd.Flags().IntVar(f.Int, f.Flag, 0, f.Usage)
		}
	}

	var asJSON bool
	routesCmd := &cobra.Command{
		Use:   "routes",
		Short: "Print the routing table, one route per line",
		Example: `  tinyfarm proxy routes
  tinyfarm proxy routes --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := proxy.NewRegistry(proxyDir(), nil).Routes(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			if asJSON {
				// Empty lists print as [], not null, so consumers need no special case.
				if t.VHosts == nil {
					t.VHosts = []proxy.VHost{}
				}
				if t.Forwards == nil {
					t.Forwards = []proxy.Forward{}
				}
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(t)
			}
			if len(t.VHosts)+len(t.Forwards) == 0 {
				fmt.Fprintf(stderr, "no routes in %s\n", filepath.Join(proxyDir(), proxy.RoutesFile))
				return nil
			}
			_, err = io.WriteString(stdout, t.String())
			return err
		},
	}
	routesCmd.Flags().BoolVar(&asJSON, "json", false, "print the table as JSON")

	cmd.AddCommand(serveCmd, routesCmd)
	return cmd
}

// proxyDir is the route registry's directory in the state dir.
func proxyDir() string { return filepath.Join(StateDir(), "proxy") }

func proxyServe(ctx context.Context, listen, accessLog string, limits proxy.Limits, stdout, stderr io.Writer) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(proxyGCPercent)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := proxy.RecordDaemonPid(); err != nil {
		fmt.Fprintf(stderr, "tinyfarm: proxy serve: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	opts := proxy.Options{
		Listen:     listen,
		RoutesFile: filepath.Join(proxyDir(), proxy.RoutesFile),
		Logger:     slog.New(slog.NewTextHandler(stderr, nil)),
	}
	limits.Apply(&opts)
	switch accessLog {
	case "":
	case "-":
		opts.AccessLog = stdout
	default:
		f, err := os.OpenFile(accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(stderr, "tinyfarm: proxy serve: access log: %v\n", err)
			return exitError{engine.ExitFailed}
		}
		defer f.Close()
		opts.AccessLog = f
	}
	srv, err := proxy.NewServer(opts)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitUsage}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: proxy serve %s: %v\n", listen, err)
		return exitError{engine.ExitFailed}
	}
	fmt.Fprintf(stderr, "tinyfarm proxy: listening on %s, routes from %s\n", ln.Addr(), opts.RoutesFile)
	if err := srv.Serve(ctx, ln); err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	fmt.Fprintln(stderr, "tinyfarm proxy: stopped")
	return nil
}
