// Package proxy puts every guest's web site behind the host's single port 80.
//
// It has four parts usable without Lua, and a Lua binding:
//
//   - A route registry (Registry), a JSON file in the state dir holding
//     virtual hosts (exact names, "*.wildcard" names and an optional
//     default backend "*") and TCP forwards. Writes are atomic (temp file,
//     fsync, rename) and serialized across processes by a lock file; once
//     the table is large, a change is a checksummed line appended to a
//     journal beside it instead (journal.go), so it costs what it changes.
//     Every operation is idempotent and has a check mode that returns the
//     planned change as a unified diff of the routing table.
//   - An embedded reverse proxy (Serve / Server) built on net/http: Host
//     routing, X-Forwarded-* headers, WebSocket upgrades, streamed bodies,
//     TCP forwards with half-close, live reload when the registry file
//     changes (journal records applied to the live table, live.go), an
//     access log and graceful shutdown. Each connection starts on a fast
//     path (fastpath.go, fastparse.go) that serves only the plainest
//     body-less GET and HEAD requests on its own loop and hands the
//     connection to net/http's server at the first request it does not
//     serve; FuzzFastParse holds its parser to net/http's. On that path
//     every request takes one pipeline (pipeline.go); both use the pooled
//     backend connections (backend.go) and one retry rule. Limits
//     (limit.go, cleanRequest, checkResponse) follow nginx where it is
//     the safe reference: connection caps with idle reclaim, timeouts,
//     header caps, no "_" header names, invalid backend responses as 502.
//   - A pure nginx renderer (RenderNginx) producing an http-context snippet
//     (one server block per vhost) and a main-context stream snippet for the
//     TCP forwards.
//   - ApplyNginx, which writes the rendered files beside the live ones,
//     validates them with "nginx -t" against a temporary copy of the full
//     configuration, renames them into place and reloads nginx.
//   - A Lua binding (lua.go, require("proxy")): vhost, forward, remove,
//     routes, nginx and serve; see Module.
//
// Errors are wrapped as "op subject: cause" and match ErrInvalid,
// ErrNotFound or ErrConflict with errors.Is.
package proxy
