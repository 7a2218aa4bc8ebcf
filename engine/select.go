package engine

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Selection chooses which tasks of a playbook run (--tags, --skip-tags,
// --start-at-task, --limit). The zero value runs every task.
type Selection struct {
	// Tags runs only tasks with at least one of these tags (and tasks
	// tagged "always"). A task tagged "never" runs only when named here.
	Tags []string
	// SkipTags skips tasks with any of these tags ("always" included).
	SkipTags []string
	// StartAt skips the tasks before the first one whose name equals (or
	// matches, as a glob) StartAt.
	StartAt string
	// Limit skips tasks whose `on` targets are all outside it, and the
	// guest or name items of parallel() outside it.
	Limit Limit
}

// taskOpts is the optional second argument of task(name, {tags, on}, fn).
type taskOpts struct {
	Tags []string   `lua:"tags" doc:"a tag or a list, for --tags and --skip-tags"`
	On   lua.LValue `lua:"on" doc:"the guest(s) it acts on: a guest, a name or a list, for --limit"`
}

// skipReason says why a task selected by its tags, targets and position
// does not run, or "" when it runs. Callers hold e.mu.
func (e *Engine) skipReasonLocked(name string, tags, on []string) string {
	s := e.opts.Select
	if s.StartAt != "" && !e.started {
		if ok, _ := path.Match(s.StartAt, name); ok || name == s.StartAt {
			e.started = true
		} else {
			return "before --start-at-task " + s.StartAt
		}
	}
	if len(s.SkipTags) > 0 {
		for _, t := range tags {
			if slices.Contains(s.SkipTags, t) {
				return "tag " + t + " in --skip-tags"
			}
		}
	}
	if len(s.Tags) > 0 && !slices.Contains(tags, "always") {
		hit := false
		for _, t := range tags {
			if slices.Contains(s.Tags, t) {
				hit = true
			}
		}
		if !hit {
			return "not tagged " + strings.Join(s.Tags, ",")
		}
	} else if slices.Contains(tags, "never") && !slices.Contains(s.Tags, "never") {
		return "tagged never"
	}
	if len(on) > 0 && s.Limit.Active() {
		in := false
		for _, n := range on {
			in = in || s.Limit.Match(n)
		}
		if !in {
			return strings.Join(on, ",") + " outside --limit " + s.Limit.String()
		}
	}
	return ""
}

// targetNames reads the guest names of a task's `on` value: a guest (or
// anything with a string `name` field, such as a colinux.list() row), a
// name, or a list of those.
func targetNames(L *lua.LState, v lua.LValue) ([]string, error) {
	if v == nil || v == lua.LNil {
		return nil, nil
	}
	switch x := v.(type) {
	case lua.LString:
		return []string{string(x)}, nil
	case *lua.LUserData, *lua.LTable:
		if n, ok := itemName(L, v); ok {
			return []string{n}, nil
		}
		if t, ok := x.(*lua.LTable); ok && t.Len() > 0 {
			var out []string
			for i := 1; i <= t.Len(); i++ {
				n, ok := itemName(L, t.RawGetInt(i))
				if !ok {
					return nil, fmt.Errorf("on[%d]: want a guest or a guest name, got %s", i, t.RawGetInt(i).Type())
				}
				out = append(out, n)
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("on: want a guest, a guest name or a list of them, got %s", v.Type())
}

// itemName is the guest name v stands for: a string, or a value with a
// string `name` field.
func itemName(L *lua.LState, v lua.LValue) (string, bool) {
	switch x := v.(type) {
	case lua.LString:
		return string(x), true
	case *lua.LUserData, *lua.LTable:
		if n, ok := L.GetField(x, "name").(lua.LString); ok {
			return string(n), true
		}
	}
	return "", false
}

// unionTags merges a nested task's tags with its enclosing task's, so
// --tags web runs everything inside a task tagged web.
func unionTags(own, outer []string) []string {
	out := append(append([]string{}, outer...), own...)
	sort.Strings(out)
	return slices.Compact(out)
}

// listOnly is the reporter of --list-tasks: it passes the task list and
// errors, and drops what the (check mode) run of the playbook reports.
type listOnly struct{ Reporter }

func (l listOnly) Event(ev Event) {
	if ev.Type == "task_list" || ev.Type == "error" {
		l.Reporter.Event(ev)
	}
}

// InLimit reports whether the guest called name is inside --limit (always
// true without one). Modules use it to filter what they list.
func (env *Env) InLimit(name string) bool { return env.eng.opts.Select.Limit.Match(name) }
