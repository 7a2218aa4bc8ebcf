package proxy

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "proxy.vhost", Call: "proxy.vhost{host, to, port, replace}", Opts: vhostOpts{},
			Summary: "Routes a host name (exact or *.example.com) to a guest or an address.",
			Example: `proxy.vhost{ host = "web1.example.com", to = g, port = 80 }`},
		{Name: "proxy.forward", Call: "proxy.forward{listen, to, port, replace}", Opts: forwardOpts{},
			Summary: "A TCP forward (SSH, databases)."},
		{Name: "proxy.remove", Call: "proxy.remove{host, listen}", Opts: removeOpts{}, Summary: "Removes a vhost (host) or a forward (listen)."},
		{Name: "proxy.routes", Call: "proxy.routes()", Summary: "The routing table."},
		{Name: "proxy.daemon", Call: "proxy.daemon{listen, stop, read_header_timeout, idle_timeout, write_timeout, body_timeout, backend_timeout, max_conns, max_conns_per_ip, max_headers}", Opts: daemonOpts{},
			Summary: "A detached `tinyfarm proxy serve` for the farm, started once; it reloads routes by itself."},
		{Name: "proxy.serve", Call: "proxy.serve{listen, access_log, read_header_timeout, idle_timeout, write_timeout, body_timeout, backend_timeout, max_conns, max_conns_per_ip, max_headers}", Opts: serveOpts{}, Summary: "The embedded proxy inside this run only."},
		{Name: "proxy.nginx", Call: "proxy.nginx{path, stream_path, conf, prefix, command, reload, pid_file, listen, default_server, keepalive}", Opts: nginxOpts{},
			Summary: "nginx configuration for the routes, validated with nginx -t, replacing the live file only if\nvalid, then reloaded."},
	}
}
