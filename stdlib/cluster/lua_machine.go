package cluster

// Machine mode is the far form of the Lua surface: a controller's
// cluster.guest and cluster.run calls, sent to a host's tinyfarm as JSON
// lines. It carries Lua's option structs and error kinds and runs
// playbooks, so it belongs to the binding (lua_*.go), not to the Go API.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// MachineProtocol is the version of the machine protocol: the JSON lines
// `tinyfarm machine` speaks on stdin and stdout, which a controller
// drives over SSH. A client refuses a server of another version (and says
// which tinyfarm runs there), so two hosts never half-understand each
// other.
//
// The server writes a hello first:
//
//	{"hello":{"protocol":1,"tinyfarm":"v1.2.0","host":"h2"}}
//
// then reads requests, one JSON object a line, and answers each with a
// result or an error carrying the request's id; `run` sends the far run's
// engine events before its result:
//
//	-> {"id":1,"method":"start","params":{"name":"web7"}}
//	<- {"id":1,"result":{"changed":true}}
//	-> {"id":2,"method":"run","params":{"name":"site.lua","source":"...","vars":{}}}
//	<- {"id":2,"event":{"event":"change","change":{...}}}
//	<- {"id":2,"result":{"recap":{...}}}
//	-> {"id":3,"method":"status","params":{"name":"nope"}}
//	<- {"id":3,"error":{"kind":"not_found","message":"guest nope: not found"}}
//
// Requests run concurrently (parallel() on the controller sends several);
// answers carry the id of their request. The error kind is the Lua kind
// of the far error (lx.KindOf: errkind's classes), so `err.kind` in the
// controller's playbook is what it would be on that host.
//
// A controller also sends a keepalive every few seconds, so that its far
// runs end when it goes away (MachineKeepalive); a server too old to know
// it answers an unsupported error and the controller stops sending them.
//
//	-> {"id":4,"method":"keepalive","params":{"interval":5000000000,"count":3}}
//	<- {"id":4,"result":{}}
const MachineProtocol = 1

// Machine methods.
const (
	MethodDefine = "define" // MachineDefine -> MachineDefined
	MethodStart  = "start"  // MachineGuestOp -> MachineChanged
	MethodStop   = "stop"   // MachineGuestOp -> MachineChanged
	MethodStatus = "status" // MachineGuestOp -> MachineStatus
	// MethodWaitReady waits for the guest's ready marker (Wait, default 60s).
	MethodWaitReady = "wait_ready" // MachineGuestOp -> MachineChanged
	MethodExec      = "exec"       // MachineExec -> MachineExecResult
	MethodRead      = "read"       // MachineFile -> MachineFileContent
	MethodWrite     = "write"      // MachineFile -> MachineWritten
	MethodList      = "list"       // {} -> []MachineGuest
	MethodRun       = "run"        // MachineRun -> events, then MachineRunResult
	// MethodSSHAccess lets the controller's key into a running guest
	// over SSH and says how to reach and pin it (g:ssh()).
	MethodSSHAccess = "ssh_access" // MachineSSHAccess -> MachineSSHAccessResult
	// MethodKeepalive says the controller is still there; the first one
	// ties the session's playbook runs to it (see MachineKeepalive).
	MethodKeepalive = "keepalive" // MachineKeepalive -> {}
)

// MachineKeepalive is a controller's sign of life, sent every Interval
// (as ssh's ServerAliveInterval). A session that sent one is the
// controller's: its playbook runs end (their context is cancelled, as
// Ctrl-C would) when no line came from the controller for Count
// intervals (a cut network), or as soon as its input ends (the controller
// was killed or gave up). A session that never sent one (a batch of
// requests, `tinyfarm machine < requests`, or a controller older than
// keepalives) lets its runs finish after its input ends. Either way, runs
// end when their output breaks (a write fails: nobody reads it).
type MachineKeepalive struct {
	Interval time.Duration `json:"interval"`
	Count    int           `json:"count,omitempty"` // default DefaultKeepaliveCount
}

// The keepalive a controller sends over SSH: its far runs end within
// DefaultKeepaliveInterval*DefaultKeepaliveCount (15s) of a network cut.
const (
	DefaultKeepaliveInterval = 5 * time.Second
	DefaultKeepaliveCount    = 3 // as ssh's ServerAliveCountMax
)

// ErrControllerGone ends a far playbook run whose controller went away.
var ErrControllerGone = errors.New("the controller is gone")

// MachineHello is the server's first line.
type MachineHello struct {
	Protocol int    `json:"protocol"`
	Tinyfarm string `json:"tinyfarm"`
	Host     string `json:"host,omitempty"`
}

// MachineRequest is one line from the client.
type MachineRequest struct {
	ID     int64           `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// MachineReply is one line from the server: the hello, an event of a
// request, or its result or error.
type MachineReply struct {
	Hello  *MachineHello   `json:"hello,omitempty"`
	ID     int64           `json:"id,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"` // an engine event, as `tinyfarm run --json` prints it
	Result json.RawMessage `json:"result,omitempty"`
	Error  *MachineError   `json:"error,omitempty"`
}

// MachineError is a failed request: the Lua kind of the far error and its
// message.
type MachineError struct {
	LuaKind string `json:"kind"`
	Message string `json:"message"`
}

func (e *MachineError) Error() string { return e.Message }

// Kind makes the far kind the Lua kind here (lx.Kinder): "error" when the
// server sent none.
func (e *MachineError) Kind() string {
	if e.LuaKind == "" {
		return lx.KindError
	}
	return e.LuaKind
}

// GuestOptions are colinux.guest's options as the machine protocol sends
// them: the same names; paths are on the host that defines the guest;
// mem is in bytes (the Lua side takes "128M").
type GuestOptions struct {
	Name      string            `json:"name" lua:"name,required" doc:"the guest's name"`
	Disk      string            `json:"disk,omitempty" lua:"disk" doc:"the disk image, a path on that host"`
	Disks     []string          `json:"disks,omitempty" lua:"disks" doc:"more disk images there"`
	Base      string            `json:"base,omitempty" lua:"base" doc:"ns scatter: a shared read-only base there (disk is then the guest's layer)"`
	Mem       lx.Size           `json:"mem,omitempty" lua:"mem" default:"128M" doc:"memory quota"`
	CPUs      float64           `json:"cpus,omitempty" lua:"cpus" default:"no limit" doc:"CPU share in cores"`
	Driver    string            `json:"driver,omitempty" lua:"driver" doc:"ns, qemu or colinux (default: that host's default)"`
	Layout    string            `json:"layout,omitempty" lua:"layout" doc:"scatter or frugal (default: the disk's)"`
	Core      string            `json:"core,omitempty" lua:"core" doc:"core.gz for frugal guests, a path there"`
	Kernel    string            `json:"kernel,omitempty" lua:"kernel" doc:"kernel image (qemu, colinux), a path there"`
	Initrd    []string          `json:"initrd,omitempty" lua:"initrd" doc:"initrds (qemu, colinux), paths there"`
	Bootcodes string            `json:"bootcodes,omitempty" lua:"bootcodes" doc:"Tiny Core boot codes, a kernel line"`
	HostKey   string            `json:"host_key,omitempty" lua:"host_key" doc:"the guest's SSH host key to pin"`
	IP        string            `json:"ip,omitempty" lua:"ip" doc:"a fixed farm IP there, as cluster.claim returns it (default: allocated there)"`
	Accel     string            `json:"accel,omitempty" lua:"accel" doc:"qemu accelerator: tcg or kvm"`
	Net       string            `json:"net,omitempty" lua:"net" doc:"qemu: user or bridge"`
	UserNS    *bool             `json:"userns,omitempty" lua:"userns" doc:"ns: run in a user namespace (default where that host allows)"`
	NetRaw    bool              `json:"net_raw,omitempty" lua:"net_raw" doc:"ns: keep CAP_NET_RAW"`
	Labels    map[string]string `json:"labels,omitempty" lua:"labels" doc:"free-form labels"`
	DiskRO    bool              `json:"disk_ro,omitempty" lua:"disk_ro" doc:"attach the disks read-only"`
	Autostart bool              `json:"autostart,omitempty" lua:"autostart" doc:"tinyfarm boot on that host starts it"`
	Priority  int               `json:"autostart_priority,omitempty" lua:"autostart_priority" doc:"tinyfarm boot starts higher priorities first"`
}

// Definition is the colinux definition the options make.
func (o GuestOptions) Definition() farm.Definition {
	return farm.Definition{Name: o.Name, Driver: o.Driver, Disk: o.Disk, Disks: o.Disks, Base: o.Base,
		MemBytes: int64(o.Mem), CPUs: o.CPUs, Layout: driver.Layout(o.Layout), Core: o.Core, Kernel: o.Kernel,
		Initrds: o.Initrd, Bootcodes: o.Bootcodes, HostKey: o.HostKey, IP: o.IP, Accel: o.Accel, Net: o.Net,
		Labels: o.Labels, NetRaw: o.NetRaw, DiskRO: o.DiskRO, Autostart: o.Autostart, AutostartPriority: o.Priority}
}

// MachineDefine defines (or updates) a guest; with Check it changes
// nothing and says what would change.
type MachineDefine struct {
	Options GuestOptions `json:"options"`
	Check   bool         `json:"check,omitempty"`
}

// MachineDefined is what a define did.
type MachineDefined struct {
	Changed bool         `json:"changed"`
	Detail  string       `json:"detail,omitempty"`
	Diff    string       `json:"diff,omitempty"`
	Guest   MachineGuest `json:"guest"`
}

// MachineGuest is a guest as the far host lists it.
type MachineGuest struct {
	Name    string `json:"name"`
	Driver  string `json:"driver"`
	State   string `json:"state,omitempty"`
	Reason  string `json:"reason,omitempty"`
	IP      string `json:"ip,omitempty"` // without the prefix length
	Mem     int64  `json:"mem"`
	HostKey string `json:"host_key,omitempty"`
}

// MachineGuestOp names a guest for start, stop and status. With Check,
// start and stop say whether they would change anything.
type MachineGuestOp struct {
	Name  string        `json:"name"`
	Check bool          `json:"check,omitempty"`
	Grace time.Duration `json:"grace,omitempty"` // stop: default 10s
	Wait  time.Duration `json:"wait,omitempty"`  // start: wait this long for the ready marker (0: don't)
}

// MachineChanged is whether start or stop changed (would change) anything.
type MachineChanged struct {
	Changed bool `json:"changed"`
}

// MachineStatus is a guest's status, as g:status() returns it.
type MachineStatus struct {
	State         string   `json:"state"`
	Reason        string   `json:"reason,omitempty"`
	PID           int      `json:"pid,omitempty"`
	IP            string   `json:"ip,omitempty"`
	Driver        string   `json:"driver"`
	Isolation     string   `json:"isolation,omitempty"`
	Disk          string   `json:"disk,omitempty"`
	Autostart     bool     `json:"autostart,omitempty"`
	RestartNeeded []string `json:"restart_needed"`
	OOMKills      int      `json:"oom_kills"`
}

// MachineExec runs argv in a guest. Root runs it as the guest's root
// (through sudo where the driver enters the guest as its SSH user).
type MachineExec struct {
	Name    string        `json:"name"`
	Argv    []string      `json:"argv"`
	Stdin   []byte        `json:"stdin,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Root    bool          `json:"root,omitempty"`
}

// MachineExecResult is a finished command.
type MachineExecResult struct {
	Code   int    `json:"code"`
	Stdout []byte `json:"stdout"`
	Stderr []byte `json:"stderr"`
}

// MachineFile reads (Path) or writes (Path, Content, Mode, UID, GID) one
// file in a running guest.
type MachineFile struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Content []byte `json:"content,omitempty"`
	Mode    uint32 `json:"mode,omitempty"` // default 0644
	UID     int    `json:"uid,omitempty"`
	GID     int    `json:"gid,omitempty"`
	Check   bool   `json:"check,omitempty"`
}

// MachineFileContent is a file read; Missing when there is none.
type MachineFileContent struct {
	Content []byte `json:"content"`
	Missing bool   `json:"missing,omitempty"`
}

// MachineWritten is what a write did (target.PutResult).
type MachineWritten struct {
	Changed bool   `json:"changed"`
	Diff    string `json:"diff,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// MachineRun runs a playbook sent in the request on the far host. Name
// is the playbook's name for messages (its file name on the controller);
// require() there finds modules on the far host's path only.
type MachineRun struct {
	Name   string         `json:"name"`
	Source string         `json:"source"`
	Vars   map[string]any `json:"vars,omitempty"`
	Check  bool           `json:"check,omitempty"`
}

// MachineRunResult is a finished far run: its recap.
type MachineRunResult struct {
	Recap json.RawMessage `json:"recap"` // the engine's recap, as JSON
}

// MachineSSHAccess asks a host how a controller whose key is Key (its
// public key, authorized_keys format) reaches its running guest Name over
// SSH; with Authorize, the host also lets the key log in to the guest as
// its SSH user (with Check it changes nothing: the result says whether the
// key is in already).
type MachineSSHAccess struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	Authorize bool   `json:"authorize,omitempty"`
	Check     bool   `json:"check,omitempty"`
}

// MachineSSHAccessResult is how the controller reaches the guest through
// its host: the address of the guest's sshd as the host reaches it, the
// user, and the guest's host keys as the host's farm pinned them.
type MachineSSHAccessResult struct {
	Addr     string `json:"addr"`      // host:port, reached from the host
	User     string `json:"user"`      // the guest's SSH user
	HostKeys string `json:"host_keys"` // authorized_keys lines, pinned by the controller
	// Changed: Authorize added the key (in check mode: would add it).
	Changed bool `json:"changed,omitempty"`
	// Authorized: Authorize found the key in or added it (false only in
	// check mode, before a real run added it).
	Authorized bool   `json:"authorized"`
	File       string `json:"file"` // the guest's authorized_keys
}

// GuestSSHComment ends the authorized_keys line a host adds to a guest
// for a controller's g:ssh(): the mark to find and revoke such keys by
// (`sed -i '/ tinyfarm-cluster-controller$/d' FILE` in the guest).
const GuestSSHComment = "tinyfarm-cluster-controller"

// ErrMachineProtocol: the far side speaks another protocol, or broke it.
var ErrMachineProtocol = errors.New("machine protocol")

// lineLimit, when set, lowers MaxMachineLine (tests).
var lineLimit atomic.Int64

func machineLineLimit() int {
	if n := lineLimit.Load(); n > 0 {
		return int(n)
	}
	return MaxMachineLine
}

// readMachineLine reads one line of at most limit bytes, its newline cut.
// A longer line is read to its end and dropped: tooLong is set and line
// holds its first bytes, so the reader can name the request (its id
// comes first) and go on with the next line.
func readMachineLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > limit+1 { // +1: the newline
				tooLong = true
				line = append(line, frag[:min(len(frag), 256)]...)
			} else {
				line = append(line, frag...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			err = nil // a last line without its newline
		}
		return bytes.TrimSuffix(line, []byte("\n")), tooLong, err
	}
}

// nextMachineLine reads the next line of a session, what ("request" or
// "answer") the other side sends. A line over the limit is dropped and
// dropped is the error reply that fails its call, by the id the line
// starts with, naming its method and the way around the limit: the
// method a request names, or methodOf(id) when set (an answer names
// none). The session goes on with the next line.
func nextMachineLine(br *bufio.Reader, what string, methodOf func(id int64) string) (line []byte, dropped *MachineReply, err error) {
	line, tooLong, err := readMachineLine(br, machineLineLimit())
	if err != nil || !tooLong {
		return line, nil, err
	}
	id, method := lineID(line)
	if methodOf != nil {
		method = methodOf(id)
	}
	return nil, &MachineReply{ID: id, Error: &MachineError{LuaKind: lx.KindInvalid, Message: errLineTooLong(what, method, 0).Error()}}, nil
}

// checkLineSize refuses a request's params or an answer's result b that
// would make a line over the limit (64 bytes for the rest of the line)
// before it is sent: the other side would drop it unread.
func checkLineSize(what, method string, b []byte) error {
	if len(b) > machineLineLimit()-64 {
		return errLineTooLong(what, method, len(b))
	}
	return nil
}

var (
	leadingID     = regexp.MustCompile(`^\s*\{\s*"id"\s*:\s*(\d+)`)
	leadingMethod = regexp.MustCompile(`^\s*\{\s*"id"\s*:\s*\d+\s*,\s*"method"\s*:\s*"([a-z_]{1,32})"`)
)

// lineID is the id a line starts with (MachineRequest and MachineReply
// marshal it first), or 0, and the method that follows it in a request.
func lineID(line []byte) (int64, string) {
	m := leadingID.FindSubmatch(line)
	if m == nil {
		return 0, ""
	}
	id, _ := strconv.ParseInt(string(m[1]), 10, 64)
	method := ""
	if m := leadingMethod.FindSubmatch(line); m != nil {
		method = string(m[1])
	}
	return id, method
}

// errLineTooLong is a request or answer over the line limit: it names the
// limit and, by method, the way around it.
func errLineTooLong(what, method string, n int) error {
	fix := "send less in one call"
	switch method {
	case MethodWrite:
		fix = "write the file in parts (its content travels as base64, 4/3 of its size) and join them in the guest with g:exec, or copy it with g:exec from a place the guest reaches"
	case MethodRead:
		fix = "read it in parts (g:exec with dd or split), or copy it with g:exec to a place the controller reaches"
	case MethodRun:
		fix = "keep the playbook smaller: install its modules on that host, where require() finds them"
	case MethodExec:
		fix = "send less on stdin and print less (redirect large output to a file in the guest)"
	}
	size := "more than that"
	if n > 0 {
		size = fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Errorf("machine %s: the %s is %s; a line of the machine protocol holds at most %d MiB: %s: %w",
		method, what, size, machineLineLimit()>>20, fix, ErrInvalid)
}
