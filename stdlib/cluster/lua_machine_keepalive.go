package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// lifeline is a machine session's keepalive on the server: once armed
// by the controller's first keepalive, every line from the controller
// restarts its timer, and the timer running out (Count intervals with
// nothing) ends the session's playbook runs.
type lifeline struct {
	hangup func(error)

	mu    sync.Mutex
	t     *time.Timer
	after time.Duration
}

// arm starts (or, with another interval, restarts) the timer for a
// keepalive request.
func (l *lifeline) arm(req MachineRequest) error {
	p, err := decode[MachineKeepalive](req)
	if err != nil {
		return err
	}
	if p.Interval <= 0 {
		return fmt.Errorf("machine keepalive: want an interval (nanoseconds), got %d: %w", p.Interval, ErrInvalid)
	}
	if p.Count <= 0 {
		p.Count = DefaultKeepaliveCount
	}
	after := p.Interval * time.Duration(p.Count)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.after = after
	if l.t == nil {
		l.t = time.AfterFunc(after, func() {
			l.hangup(fmt.Errorf("%w: no keepalive for %v (%d intervals of %v)", ErrControllerGone, after, p.Count, p.Interval))
		})
		return nil
	}
	l.t.Reset(after)
	return nil
}

// seen restarts an armed timer: a line came from the controller.
func (l *lifeline) seen() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t != nil {
		l.t.Reset(l.after)
	}
}

func (l *lifeline) armed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t != nil
}

func (l *lifeline) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.t != nil {
		l.t.Stop()
	}
}

// KeepAlive sends a keepalive every interval until the session ends or
// Close, so that the far host ends this session's playbook runs when this
// controller goes away: count intervals without one (a cut network) or
// the session's input closing (this process killed). A far tinyfarm too
// old for keepalives refuses the first one: then its runs go on to their
// end, as before. A second call does nothing.
func (m *Machine) KeepAlive(interval time.Duration, count int) {
	m.mu.Lock()
	if m.keepStop != nil {
		m.mu.Unlock()
		return
	}
	stop := make(chan struct{})
	m.keepStop = stop
	m.mu.Unlock()
	p := MachineKeepalive{Interval: interval, Count: count}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			err := m.Call(ctx, MethodKeepalive, p, nil, nil)
			cancel()
			var far *hostError
			if errors.As(err, &far) || m.ended() {
				return // refused (an older tinyfarm), or the session ended
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
}

// ended: the session failed or was closed.
func (m *Machine) ended() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err != nil || m.closed
}
