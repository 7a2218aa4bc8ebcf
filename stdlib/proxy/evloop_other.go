//go:build !linux

package proxy

import "net"

// loopGroup: the event loops are Linux's (evloop_linux.go); elsewhere
// the goroutine fast path serves every connection.
type loopGroup struct{}

func (s *Server) startLoops(net.Listener, *connLimiter, *handoffListener) *loopGroup { return nil }

func (g *loopGroup) shutdown(interface{ Done() <-chan struct{} }) {}
