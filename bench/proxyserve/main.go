// Command proxyserve is the helper of bench/proxy.sh: it runs the embedded
// proxy, a tiny backend, writes benchmark route tables and churns routes,
// using the stdlib/proxy Go API directly (the CLI is built separately).
//
//	proxyserve backend -listen ADDR
//	proxyserve routes  -dir DIR -backend ADDR -vhosts N
//	proxyserve serve   -dir DIR -listen ADDR [-access-log FILE] [-cpuprofile FILE] [-memprofile FILE]
//	proxyserve nginx   -dir DIR -prefix P -listen ADDR [-reload]
//	proxyserve churn   -dir DIR -backend ADDR -n N [-prefix P -listen ADDR]
//	proxyserve reroute -dir DIR -listen ADDR -backend ADDR -backend2 ADDR -n N
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: proxyserve backend|routes|serve|nginx|churn [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", "", "registry directory")
	listen := fs.String("listen", "127.0.0.1:18080", "listen address")
	backend := fs.String("backend", "127.0.0.1:18081", "backend address")
	backend2 := fs.String("backend2", "", "reroute: the second backend")
	name := fs.String("name", "ok", "backend: what it answers")
	vhosts := fs.Int("vhosts", 1, "number of vhosts v0..vN-1.bench.test")
	accessLog := fs.String("access-log", "", "access log file")
	prefix := fs.String("prefix", "", "nginx prefix dir (nginx.conf, tinyfarm.conf)")
	reload := fs.Bool("reload", false, "reload nginx after applying")
	n := fs.Int("n", 20, "churn: add/remove cycles")
	cpuProfile := fs.String("cpuprofile", "", "serve: write a CPU profile here")
	memProfile := fs.String("memprofile", "", "serve: write an allocation profile here at exit")
	fs.Parse(os.Args[2:])
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "proxyserve:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		defer func() {
			f, err := os.Create(*memProfile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "proxyserve:", err)
			}
		}()
	}

	var err error
	switch os.Args[1] {
	case "backend":
		srv := &http.Server{Addr: *listen, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, *name+"\n")
		})}
		go func() { <-ctx.Done(); srv.Close() }()
		if err = srv.ListenAndServe(); err == http.ErrServerClosed {
			err = nil
		}
	case "routes":
		err = writeRoutes(*dir, *backend, *vhosts)
	case "serve":
		// As the CLI's "proxy serve" should: the proxy's live heap is a few
		// MiB, so trading memory for less GC work is cheap (about +15% req/s).
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(400)
		}
		opts := proxy.Options{Listen: *listen, RoutesFile: filepath.Join(*dir, proxy.RoutesFile)}
		if *accessLog != "" {
			f, ferr := os.OpenFile(*accessLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if ferr != nil {
				err = ferr
				break
			}
			defer f.Close()
			opts.AccessLog = f
		}
		err = proxy.Serve(ctx, opts)
	case "nginx":
		err = applyNginx(ctx, *dir, *prefix, *listen, *reload)
	case "churn":
		err = churn(ctx, *dir, *backend, *n, *prefix, *listen)
	case "reroute":
		err = reroute(ctx, *dir, *listen, *backend, *backend2, *n)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxyserve:", err)
		os.Exit(1)
	}
}

// writeRoutes writes n vhosts in one atomic write (the registry API adds
// one route per write, with an fsync each).
func writeRoutes(dir, backend string, n int) error {
	host, port, err := splitPort(backend)
	if err != nil {
		return err
	}
	var t proxy.Table
	for i := 0; i < n; i++ {
		t.VHosts = append(t.VHosts, proxy.VHost{Host: fmt.Sprintf("v%d.bench.test", i), To: backend, Addr: host, Port: port})
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".routes.tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, proxy.RoutesFile))
}

func splitPort(addr string) (string, int, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			p, err := strconv.Atoi(addr[i+1:])
			return addr[:i], p, err
		}
	}
	return "", 0, fmt.Errorf("no port in %q", addr)
}

func nginxConfig(prefix, listen string, reload bool) proxy.NginxConfig {
	return proxy.NginxConfig{
		Path:    filepath.Join(prefix, "tinyfarm.conf"),
		Conf:    filepath.Join(prefix, "nginx.conf"),
		Prefix:  prefix + "/",
		Command: []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "nginx"},
		Reload:  reload,
		PIDFile: filepath.Join(prefix, "nginx.pid"),
		Render:  proxy.NginxOptions{Listen: listen, DefaultServer: true},
	}
}

func applyNginx(ctx context.Context, dir, prefix, listen string, reload bool) error {
	t, err := proxy.NewRegistry(dir, nil).Routes(ctx)
	if err != nil {
		return err
	}
	_, err = proxy.ApplyNginx(ctx, t, nginxConfig(prefix, listen, reload))
	return err
}

// churn adds and removes the vhost churn.bench.test n times through the
// registry API, and re-applies nginx after each change when prefix is set.
func churn(ctx context.Context, dir, backend string, n int, prefix, listen string) error {
	reg := proxy.NewRegistry(dir, nil)
	apply := func() error {
		if prefix == "" {
			return nil
		}
		return applyNginx(ctx, dir, prefix, listen, true)
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "churn.bench.test", To: backend}, proxy.ChangeOptions{}); err != nil {
			return err
		}
		if err := apply(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := reg.Remove(ctx, proxy.RemoveSpec{Host: "churn.bench.test"}, proxy.ChangeOptions{}); err != nil {
			return err
		}
		if err := apply(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// reroute measures how long a route change takes to apply: n times, it
// moves the vhost v1.bench.test between backend and backend2 (whose
// answers differ) through the registry API, timing from the call to the
// first response from the new backend (GETs in a loop on a keep-alive
// connection). It prints the median, p99 and maximum, and the median of
// the API call alone.
func reroute(ctx context.Context, dir, listen, backend, backend2 string, n int) error {
	reg := proxy.NewRegistry(dir, nil)
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 5 * time.Second}
	answer := func() (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+listen+"/", nil)
		req.Host = "v1.bench.test"
		res, err := cl.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	// Start from backend, whatever an earlier run left.
	if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "v1.bench.test", To: backend, Replace: true}, proxy.ChangeOptions{}); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	var total, call []time.Duration
	targets := []string{backend2, backend}        // the warm-up moves it to backend2
	for i := -1; i < n && ctx.Err() == nil; i++ { // i = -1: a warm-up, not counted
		to := targets[(i+1)%2]
		before, err := answer()
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "v1.bench.test", To: to, Replace: true}, proxy.ChangeOptions{}); err != nil {
			return err
		}
		api := time.Since(start)
		for {
			got, err := answer()
			if err != nil {
				return err
			}
			if got != before {
				break
			}
			if time.Since(start) > 10*time.Second {
				return fmt.Errorf("route change to %s not applied after 10s", to)
			}
		}
		if i >= 0 {
			total, call = append(total, time.Since(start)), append(call, api)
		}
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := append([]time.Duration(nil), d...)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) }
	fmt.Printf("%s %s %s %s\n", ms(pct(total, 0.5)), ms(pct(total, 0.99)), ms(pct(total, 1)), ms(pct(call, 0.5)))
	return nil
}
