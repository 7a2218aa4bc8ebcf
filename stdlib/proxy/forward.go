package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// forwarder relays TCP connections from one listen address to a backend.
// The backend can change on reload without closing the listener.
type forwarder struct {
	listen  string
	ln      net.Listener
	backend atomic.Pointer[string]
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// syncForwards starts, re-targets and stops forwards to match fs. Called
// with s.mu held. A listen address that cannot be bound is logged and
// retried on the next reload.
func (s *Server) syncForwards(fs []Forward) {
	want := map[string]Forward{}
	for _, f := range fs {
		want[f.Listen] = f
	}
	for listen, fw := range s.forwards {
		if _, ok := want[listen]; !ok {
			fw.ln.Close() // established connections finish on their own
			delete(s.forwards, listen)
			s.opts.Logger.Info("proxy: forward stopped", "listen", listen)
		}
	}
	for listen, f := range want {
		addr := f.Backend()
		if fw, ok := s.forwards[listen]; ok {
			fw.backend.Store(&addr)
			continue
		}
		if s.fwdCtx.Err() != nil {
			continue
		}
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			s.opts.Logger.Error("proxy: forward listen", "listen", listen, "err", err)
			continue
		}
		fw := &forwarder{listen: listen, ln: ln, conns: map[net.Conn]struct{}{}}
		fw.backend.Store(&addr)
		s.forwards[listen] = fw
		s.conns.Add(1)
		go func() { defer s.conns.Done(); s.acceptLoop(fw) }()
		s.opts.Logger.Info("proxy: forward started", "listen", listen, "backend", addr)
	}
}

func (s *Server) acceptLoop(fw *forwarder) {
	for {
		c, err := fw.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.opts.Logger.Warn("proxy: forward accept", "listen", fw.listen, "err", err)
			continue
		}
		fw.mu.Lock()
		fw.conns[c] = struct{}{}
		fw.mu.Unlock()
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			defer func() {
				fw.mu.Lock()
				delete(fw.conns, c)
				fw.mu.Unlock()
			}()
			s.relay(c, *fw.backend.Load())
		}()
	}
}

// relay copies both ways; when one side finishes sending, the other side's
// write half is closed (half-close), and the relay ends when both are done.
func (s *Server) relay(client net.Conn, addr string) {
	defer client.Close()
	d := net.Dialer{Timeout: s.opts.DialTimeout}
	up, err := d.DialContext(s.fwdCtx, "tcp", addr)
	if err != nil {
		s.opts.Logger.Warn("proxy: forward dial", "backend", addr, "err", err)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pipe(up, client) }()
	go func() { defer wg.Done(); s.pipe(client, up) }()
	wg.Wait()
}

func (s *Server) pipe(dst, src net.Conn) {
	buf := s.bufs.Get()
	defer s.bufs.Put(buf)
	_, err := io.CopyBuffer(dst, src, buf)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	// An error on one side ends both directions.
	dst.Close()
	src.Close()
}

// closeForwards stops accepting, waits for relayed connections until ctx is
// done, then closes the rest.
func (s *Server) closeForwards(ctx context.Context) {
	s.mu.Lock()
	s.stopFwd()
	for listen, fw := range s.forwards {
		fw.ln.Close()
		delete(s.forwards, listen)
		defer func(fw *forwarder) {
			fw.mu.Lock()
			for c := range fw.conns {
				c.Close()
			}
			fw.mu.Unlock()
		}(fw)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
}
