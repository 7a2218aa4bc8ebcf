package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

type retryOpts struct {
	Times   int            `lua:"times" default:"3" doc:"attempts in all"`
	Delay   time.Duration  `lua:"delay" default:"1s" doc:"wait before the second attempt"`
	Backoff float64        `lua:"backoff" default:"1" doc:"delay multiplier after each attempt"`
	Max     time.Duration  `lua:"max_delay" doc:"cap on the delay"`
	Until   *lua.LFunction `lua:"until" doc:"until(results...) true: success"`
}

// luaRetry is retry{times=3, delay="1s", backoff=1, max_delay, until=fn}:
// it returns a function that calls fn(...) until it neither raises nor
// fails until(results...), at most `times` times, sleeping delay between
// attempts (multiplied by backoff after each). It returns fn's results, or
// raises the last failure with the number of attempts.
func (e *Engine) luaRetry(L *lua.LState) int {
	o := retryOpts{Times: 3, Delay: time.Second, Backoff: 1}
	lx.Opts(L, 1, "retry", &o)
	switch {
	case o.Times < 1:
		lx.Raisef(L, "retry: times must be at least 1, got %d", o.Times)
	case o.Backoff < 1:
		lx.Raisef(L, "retry: backoff must be at least 1 (1 = a fixed delay), got %g", o.Backoff)
	case o.Delay < 0:
		lx.Raisef(L, "retry: delay must not be negative, got %s", o.Delay)
	}
	L.Push(L.NewFunction(func(L *lua.LState) int {
		fn := L.CheckFunction(1)
		args := make([]lua.LValue, 0, L.GetTop()-1)
		for i := 2; i <= L.GetTop(); i++ {
			args = append(args, L.Get(i))
		}
		return e.retryCall(L, o, fn, args)
	}))
	return 1
}

// errUntil is the failure of an attempt whose results did not satisfy until.
var errUntil = errors.New("until condition not met")

func (e *Engine) retryCall(L *lua.LState, o retryOpts, fn *lua.LFunction, args []lua.LValue) int {
	delay := o.Delay
	var last *lx.Error
	for attempt := 1; attempt <= o.Times; attempt++ {
		base := L.GetTop()
		L.Push(fn)
		for _, a := range args {
			L.Push(a)
		}
		err := L.PCall(len(args), lua.MultRet, nil)
		if err == nil && o.Until != nil {
			n := L.GetTop() - base
			L.Push(o.Until)
			for i := 1; i <= n; i++ {
				L.Push(L.Get(base + i))
			}
			if uerr := L.PCall(n, 1, nil); uerr != nil {
				err = uerr
			} else {
				ok := lua.LVAsBool(L.Get(-1))
				L.Pop(1)
				if !ok {
					err = &lx.Error{Where: lx.Where(L), Err: errUntil}
				}
			}
		}
		if err == nil {
			e.noteAttempts(L, attempt)
			return L.GetTop() - base
		}
		L.SetTop(base)
		last = e.toLxError(err)
		var skip *errSkip
		if errors.As(last, &skip) || last.Kind() == lx.KindCanceled || L.Context() != nil && L.Context().Err() != nil {
			e.noteAttempts(L, attempt)
			L.Error(lx.NewErrorValue(L, last), 0)
		}
		if attempt == o.Times {
			e.noteAttempts(L, attempt)
			break
		}
		e.env.Logf("retry: attempt %d of %d failed (%s); again in %s", attempt, o.Times, last.Error(), delay)
		serr := e.env.Block(L, func(ctx context.Context) error {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		if serr != nil {
			e.noteAttempts(L, attempt)
			lx.Raise(L, fmt.Errorf("retry: interrupted after %d attempts: %w", attempt, serr))
		}
		delay = time.Duration(float64(delay) * o.Backoff)
		if o.Max > 0 && delay > o.Max {
			delay = o.Max
		}
	}
	lx.Raise(L, &retryError{attempts: o.Times, last: last})
	return 0
}

// noteAttempts counts the attempts beyond the first against the running
// task, for its line and the recap.
func (e *Engine) noteAttempts(L *lua.LState, attempts int) {
	if attempts <= 1 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if t := e.currentTask(L); t != nil {
		t.attempts += attempts - 1
	} else {
		e.recap.Retries += attempts - 1
	}
}

// retryError is the failure of the last attempt, with the count; kind and
// errors.Is see the last failure.
type retryError struct {
	attempts int
	last     *lx.Error
}

func (r *retryError) Error() string {
	return fmt.Sprintf("retry: failed %d attempts, the last with: %s", r.attempts, r.last.Error())
}
func (r *retryError) Unwrap() error { return r.last }
func (r *retryError) Kind() string  { return r.last.Kind() }
