package lx

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// Size is a byte count written in Lua as a number of bytes or a string with
// a binary suffix: "128M", "1G", "512K", "64MiB".
type Size int64

// ParseSize parses "128M", "1.5G", "4096" (bytes).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 128M, 1G, 4096)", s)
	}
	return Size(f * float64(mult)), nil
}

// Opts decodes the options table at stack index n into dst, a pointer to a
// struct whose fields carry `lua:"name"` tags. A missing or nil argument
// leaves dst as is. An unknown key raises an error that names the key and
// lists the valid ones; a wrong type names the option and both types.
// fn names the calling function in messages ("host.write").
//
// Supported field types: string, bool, ints, floats, time.Duration (seconds
// as a number, or "30s"), Size, []string (a list or one string),
// map[string]string, lua.LValue (raw), *lua.LFunction.
func Opts(L *lua.LState, n int, fn string, dst any) {
	v := L.Get(n)
	if v == lua.LNil {
		return
	}
	tbl, ok := v.(*lua.LTable)
	if !ok {
		Raisef(L, "%s: options must be a table, got %s", fn, v.Type())
	}
	if err := DecodeTable(tbl, dst); err != nil {
		Raise(L, WithKind(fmt.Errorf("%s: %w", fn, err), KindInvalid))
	}
}

// DecodeTable is Opts without the Lua stack: it decodes tbl into dst.
func DecodeTable(tbl *lua.LTable, dst any) error {
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("lx.DecodeTable: dst must be a pointer to a struct")
	}
	rv = rv.Elem()
	fields := fieldsOf(rv.Type())
	var errs []error
	tbl.ForEach(func(k, val lua.LValue) {
		ks, ok := k.(lua.LString)
		if !ok {
			errs = append(errs, fmt.Errorf("option keys must be names, got %s %s", k.Type(), k))
			return
		}
		idx, ok := fields[string(ks)]
		if !ok {
			errs = append(errs, unknownKey(string(ks), fields))
			return
		}
		if err := assign(rv.FieldByIndex(idx), val); err != nil {
			errs = append(errs, fmt.Errorf("option %s: %w", ks, err))
		}
	})
	for name, idx := range fields {
		if required(rv.Type().FieldByIndex(idx)) && tbl.RawGetString(name) == lua.LNil {
			errs = append(errs, fmt.Errorf("option %s is required", name))
		}
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return errs[0]
	}
	return nil
}

func required(f reflect.StructField) bool {
	_, rest, _ := strings.Cut(f.Tag.Get("lua"), ",")
	return rest == "required"
}

// fieldsOf maps option names to field index paths. The fields of an
// embedded struct without a tag of its own are options of the outer one,
// so option sets shared by several functions are declared once.
func fieldsOf(t reflect.Type) map[string][]int {
	m := map[string][]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("lua"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for n, idx := range fieldsOf(f.Type) {
				m[n] = append([]int{i}, idx...)
			}
			continue
		}
		if name != "" && name != "-" {
			m[name] = []int{i}
		}
	}
	return m
}

func unknownKey(key string, fields map[string][]int) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	hint := ""
	best := 3
	for _, n := range names {
		if d := distance(key, n); d < best {
			best, hint = d, n
		}
	}
	if hint != "" {
		return fmt.Errorf("unknown option %q (did you mean %q? valid: %s)", key, hint, strings.Join(names, ", "))
	}
	return fmt.Errorf("unknown option %q (valid: %s)", key, strings.Join(names, ", "))
}

// Distance is the Levenshtein distance between a and b, for "did you mean"
// hints outside option tables (handler names, template variables).
func Distance(a, b string) int { return distance(a, b) }

// distance is the Levenshtein distance, for "did you mean" hints.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev = cur
	}
	return prev[len(b)]
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	sizeType     = reflect.TypeOf(Size(0))
	lvalueType   = reflect.TypeOf((*lua.LValue)(nil)).Elem()
	lfuncType    = reflect.TypeOf((*lua.LFunction)(nil))
)

func assign(f reflect.Value, v lua.LValue) error {
	if v == lua.LNil {
		return nil
	}
	if f.Kind() == reflect.Pointer && f.Type() != lfuncType {
		// *T marks an option whose absence differs from its zero value.
		p := reflect.New(f.Type().Elem())
		if err := assign(p.Elem(), v); err != nil {
			return err
		}
		f.Set(p)
		return nil
	}
	switch f.Type() {
	case lvalueType:
		f.Set(reflect.ValueOf(v))
		return nil
	case lfuncType:
		fn, ok := v.(*lua.LFunction)
		if !ok {
			return typeErr("function", v)
		}
		f.Set(reflect.ValueOf(fn))
		return nil
	case durationType:
		switch x := v.(type) {
		case lua.LNumber:
			f.SetInt(int64(float64(x) * float64(time.Second)))
			return nil
		case lua.LString:
			d, err := time.ParseDuration(string(x))
			if err != nil {
				return fmt.Errorf("invalid duration %q (want e.g. 30s, 2m, or seconds as a number)", string(x))
			}
			f.SetInt(int64(d))
			return nil
		}
		return typeErr("duration", v)
	case sizeType:
		switch x := v.(type) {
		case lua.LNumber:
			f.SetInt(int64(x))
			return nil
		case lua.LString:
			s, err := ParseSize(string(x))
			if err != nil {
				return err
			}
			f.SetInt(int64(s))
			return nil
		}
		return typeErr("size", v)
	}
	switch f.Kind() {
	case reflect.String:
		switch x := v.(type) {
		case lua.LString:
			f.SetString(string(x))
		case lua.LNumber:
			f.SetString(x.String())
		default:
			return typeErr("string", v)
		}
	case reflect.Bool:
		b, ok := v.(lua.LBool)
		if !ok {
			return typeErr("boolean", v)
		}
		f.SetBool(bool(b))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(lua.LNumber)
		if !ok || float64(n) != float64(int64(n)) {
			return typeErr("integer", v)
		}
		f.SetInt(int64(n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(lua.LNumber)
		if !ok || n < 0 || float64(n) != float64(int64(n)) {
			return typeErr("non-negative integer", v)
		}
		f.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		n, ok := v.(lua.LNumber)
		if !ok {
			return typeErr("number", v)
		}
		f.SetFloat(float64(n))
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			return errors.New("unsupported option type (binding bug)")
		}
		var out []string
		switch x := v.(type) {
		case lua.LString:
			out = []string{string(x)}
		case *lua.LTable:
			var bad lua.LValue
			n := x.Len()
			x.ForEach(func(k, e lua.LValue) {
				if kn, ok := k.(lua.LNumber); !ok || int(kn) < 1 || int(kn) > n {
					bad = k
				}
			})
			if bad != nil {
				return fmt.Errorf("want a list of strings, got key %v", bad)
			}
			for i := 1; i <= n; i++ {
				e := x.RawGetInt(i)
				switch s := e.(type) {
				case lua.LString:
					out = append(out, string(s))
				case lua.LNumber:
					out = append(out, s.String())
				default:
					return fmt.Errorf("item %d: want string, got %s", i, e.Type())
				}
			}
		default:
			return typeErr("list of strings", v)
		}
		f.Set(reflect.ValueOf(out))
	case reflect.Map:
		if f.Type().Key().Kind() != reflect.String || f.Type().Elem().Kind() != reflect.String {
			return errors.New("unsupported option type (binding bug)")
		}
		x, ok := v.(*lua.LTable)
		if !ok {
			return typeErr("table of strings", v)
		}
		m := map[string]string{}
		var err error
		x.ForEach(func(k, e lua.LValue) {
			ks, ok1 := k.(lua.LString)
			if !ok1 {
				err = fmt.Errorf("want string keys, got %s", k.Type())
				return
			}
			switch s := e.(type) {
			case lua.LString, lua.LNumber, lua.LBool:
				m[string(ks)] = s.String()
			default:
				err = fmt.Errorf("key %s: want string, got %s", ks, e.Type())
			}
		})
		if err != nil {
			return err
		}
		f.Set(reflect.ValueOf(m))
	default:
		return errors.New("unsupported option type (binding bug)")
	}
	return nil
}

func typeErr(want string, got lua.LValue) error {
	return fmt.Errorf("want %s, got %s", want, got.Type())
}
