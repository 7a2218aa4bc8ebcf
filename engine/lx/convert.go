package lx

import (
	"reflect"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luar "layeh.com/gopher-luar"
)

// FromGo converts a plain Go value to Lua: scalars, []byte (string), slices
// and arrays (lists), maps with string keys and structs with `lua` tags
// (tables, so they print and iterate). Anything else, such as a pointer to a
// type with methods, is wrapped by gopher-luar.
func FromGo(L *lua.LState, v any) lua.LValue {
	if v == nil {
		return lua.LNil
	}
	if lv, ok := v.(lua.LValue); ok {
		return lv
	}
	switch x := v.(type) {
	case string:
		return lua.LString(x)
	case []byte:
		return lua.LString(x)
	case bool:
		return lua.LBool(x)
	case error:
		return lua.LString(x.Error())
	case time.Duration:
		return lua.LNumber(x.Seconds())
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return lua.LNumber(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return lua.LNumber(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return lua.LNumber(rv.Float())
	case reflect.String:
		return lua.LString(rv.String())
	case reflect.Slice, reflect.Array:
		t := L.CreateTable(rv.Len(), 0)
		for i := 0; i < rv.Len(); i++ {
			t.RawSetInt(i+1, FromGo(L, rv.Index(i).Interface()))
		}
		return t
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		t := L.CreateTable(0, rv.Len())
		iter := rv.MapRange()
		for iter.Next() {
			t.RawSetString(iter.Key().String(), FromGo(L, iter.Value().Interface()))
		}
		return t
	case reflect.Pointer:
		if rv.IsNil() {
			return lua.LNil
		}
		if rv.Elem().Kind() == reflect.Struct && hasLuaTags(rv.Elem().Type()) {
			return FromGo(L, rv.Elem().Interface())
		}
	case reflect.Struct:
		if hasLuaTags(rv.Type()) {
			t := L.CreateTable(0, rv.NumField())
			for i := 0; i < rv.NumField(); i++ {
				name, opt, _ := strings.Cut(rv.Type().Field(i).Tag.Get("lua"), ",")
				if name == "" || name == "-" || !rv.Type().Field(i).IsExported() {
					continue
				}
				fv := rv.Field(i)
				if opt == "omitempty" && fv.IsZero() {
					continue
				}
				t.RawSetString(name, FromGo(L, fv.Interface()))
			}
			return t
		}
	}
	return luar.New(L, v)
}

func hasLuaTags(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("lua") != "" {
			return true
		}
	}
	return false
}

// ToGo converts a Lua value to plain Go: nil, bool, float64 (or int64 when
// integral), string, []any for sequences, map[string]any for other tables.
// Functions and userdata come back as the lua.LValue itself.
func ToGo(v lua.LValue) any {
	return toGo(v, 0)
}

func toGo(v lua.LValue, depth int) any {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LNumber:
		if float64(x) == float64(int64(x)) {
			return int64(x)
		}
		return float64(x)
	case lua.LString:
		return string(x)
	case *lua.LTable:
		if depth > 64 {
			return "<nested too deep>"
		}
		n := x.Len()
		count := 0
		x.ForEach(func(_, _ lua.LValue) { count++ })
		if n > 0 && count == n {
			out := make([]any, n)
			for i := 1; i <= n; i++ {
				out[i-1] = toGo(x.RawGetInt(i), depth+1)
			}
			return out
		}
		m := make(map[string]any, count)
		x.ForEach(func(k, e lua.LValue) { m[k.String()] = toGo(e, depth+1) })
		return m
	}
	return v
}

// StringList reads a Lua list of strings (or one string) at stack index n.
func StringList(L *lua.LState, n int, fn string) []string {
	var holder struct {
		V []string `lua:"v"`
	}
	t := L.NewTable()
	t.RawSetString("v", L.Get(n))
	if err := DecodeTable(t, &holder); err != nil {
		Raisef(L, "%s: argument #%d: %s", fn, n, strings.TrimPrefix(err.Error(), "option v: "))
	}
	return holder.V
}

// SortedKeys returns a table's string keys in order, for stable output.
func SortedKeys(t *lua.LTable) []string {
	var keys []string
	t.ForEach(func(k, _ lua.LValue) {
		if s, ok := k.(lua.LString); ok {
			keys = append(keys, string(s))
		}
	})
	sort.Strings(keys)
	return keys
}

// ToStringValue is tostring() for a raised value: tinyfarm errors give their
// message, other values their Lua string form.
func ToStringValue(v lua.LValue) string {
	if e, ok := ErrorFromValue(v); ok {
		return e.Error()
	}
	return v.String()
}

// Command reads a command at stack index n the way g:exec takes it: a
// string runs through /bin/sh -c, a list is the argv itself.
func Command(L *lua.LState, n int, fn string) []string {
	switch v := L.Get(n).(type) {
	case lua.LString:
		return []string{"/bin/sh", "-c", string(v)}
	case *lua.LTable:
		return StringList(L, n, fn)
	default:
		Raisef(L, "%s: want a command string or an argv list, got %s", fn, v.Type())
		return nil
	}
}
