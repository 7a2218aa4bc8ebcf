package lx

import (
	"reflect"
	"sort"
)

// Option describes one key of an options struct as Opts decodes it: the
// same struct tags drive the decoder, its "valid: ..." list and the docs
// (`tinyfarm doc`). Optional tags: default:"128M" (what the code uses when
// the key is absent) and doc:"one line".
type Option struct {
	Name     string
	Type     string // string, boolean, number, duration, size, list, table, function, value
	Required bool
	Default  string
	Doc      string
}

// Options lists the options of dst (a struct or a pointer to one), sorted
// by name.
func Options(dst any) []Option {
	t := reflect.TypeOf(dst)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Option
	for name, idx := range fieldsOf(t) {
		f := structField(t, idx)
		out = append(out, Option{Name: name, Type: typeName(f.Type), Required: required(f),
			Default: f.Tag.Get("default"), Doc: f.Tag.Get("doc")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// structField is the field at a fieldsOf index, whether fieldsOf gives
// field numbers or index paths (embedded option structs), so this file
// follows the decoder either way.
func structField[I int | []int](t reflect.Type, idx I) reflect.StructField {
	switch i := any(idx).(type) {
	case int:
		return t.Field(i)
	case []int:
		return t.FieldByIndex(i)
	}
	panic("lx: unreachable")
}

func typeName(t reflect.Type) string {
	switch t {
	case durationType:
		return "duration"
	case sizeType:
		return "size"
	case lvalueType:
		return "value"
	case lfuncType:
		return "function"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list"
	case reflect.Map:
		return "table"
	}
	return t.String()
}
