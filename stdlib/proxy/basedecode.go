package proxy

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// decodeBaseFast decodes a base file in the shape json.Marshal writes it
// (any field order and white space), about five times faster than
// encoding/json: with 10,000 routes the first change in a process and a
// daemon's full load spent most of their time decoding. Anything else (an
// escape, a non-ASCII byte, an unknown field, a number that is not a
// plain integer) is errSlowPath, and decodeBase leaves it to encoding/json,
// which also words the errors.
func decodeBaseFast(data []byte) (baseFile, error) {
	d := fastDecoder{data: data, intern: map[string]string{}}
	var b baseFile
	seen := map[string]bool{}
	err := d.object(func(key string) error {
		if seen[key] {
			return errSlowPath // encoding/json's rules for a repeated field
		}
		seen[key] = true
		switch key {
		case "vhosts":
			b.VHosts = make([]VHost, 0, bytes.Count(data, []byte(`"host"`)))
			return d.array(func() error {
				b.VHosts = append(b.VHosts, VHost{})
				v := &b.VHosts[len(b.VHosts)-1]
				return d.route("host", &v.Host, &v.To, &v.Guest, &v.Addr, &v.Port, &v.ToPort)
			}, func() { b.VHosts = nil })
		case "forwards":
			return d.array(func() error {
				b.Forwards = append(b.Forwards, Forward{})
				f := &b.Forwards[len(b.Forwards)-1]
				return d.route("listen", &f.Listen, &f.To, &f.Guest, &f.Addr, &f.Port, &f.ToPort)
			}, func() { b.Forwards = nil })
		case "epoch":
			var e int
			err := d.integer(&e)
			b.Epoch = int64(e)
			return err
		}
		return errSlowPath
	})
	if err != nil {
		return baseFile{}, err
	}
	d.space()
	if d.i != len(d.data) {
		return baseFile{}, errSlowPath
	}
	return b, nil
}

var errSlowPath = errors.New("not in the fast decoder's shape")

type fastDecoder struct {
	data   []byte
	i      int
	intern map[string]string // targets and addresses, shared by many routes
}

// route decodes a vhost or a forward ({"host" or "listen", "to", "guest",
// "addr", "port", "to_port"}) without a closure per field.
func (d *fastDecoder) route(first string, from, to *string, guest *bool, addr *string, port, toPort *int) error {
	if !d.next('{') {
		return errSlowPath
	}
	if d.next('}') {
		return nil
	}
	for {
		key, err := d.key()
		if err != nil {
			return err
		}
		if !d.next(':') {
			return errSlowPath
		}
		switch string(key) {
		case first:
			err = d.str(from)
		case "to":
			err = d.shared(to)
		case "guest":
			err = d.boolean(guest)
		case "addr":
			err = d.shared(addr)
		case "port":
			err = d.integer(port)
		case "to_port":
			err = d.integer(toPort)
		default:
			err = errSlowPath
		}
		if err != nil {
			return err
		}
		if d.next('}') {
			return nil
		}
		if !d.next(',') {
			return errSlowPath
		}
	}
}

// key returns an object key's bytes (only compared: string(key) in a
// switch does not copy them).
func (d *fastDecoder) key() ([]byte, error) {
	start, end, err := d.strBytes()
	if err != nil {
		return nil, err
	}
	return d.data[start:end], nil
}

// shared decodes a string, one copy per distinct value.
func (d *fastDecoder) shared(s *string) error {
	start, end, err := d.strBytes()
	if err != nil {
		return err
	}
	b := d.data[start:end]
	if v, ok := d.intern[string(b)]; ok {
		*s = v
		return nil
	}
	*s = string(b)
	if len(d.intern) < 1024 {
		d.intern[*s] = *s
	}
	return nil
}

func (d *fastDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips white space and consumes c.
func (d *fastDecoder) next(c byte) bool {
	d.space()
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// literal consumes the word w ("null", "true", "false").
func (d *fastDecoder) literal(w string) bool {
	d.space()
	if len(d.data)-d.i >= len(w) && string(d.data[d.i:d.i+len(w)]) == w {
		d.i += len(w)
		return true
	}
	return false
}

// object decodes {"key": value, ...}, calling field for each key with
// the decoder before the value.
func (d *fastDecoder) object(field func(key string) error) error {
	if !d.next('{') {
		return errSlowPath
	}
	if d.next('}') {
		return nil
	}
	for {
		var key string
		if err := d.str(&key); err != nil {
			return err
		}
		if !d.next(':') {
			return errSlowPath
		}
		if err := field(key); err != nil {
			return err
		}
		if d.next('}') {
			return nil
		}
		if !d.next(',') {
			return errSlowPath
		}
	}
}

// array decodes [elem, ...] or null (then null is called).
func (d *fastDecoder) array(elem func() error, null func()) error {
	if d.literal("null") {
		null()
		return nil
	}
	if !d.next('[') {
		return errSlowPath
	}
	if d.next(']') {
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		if d.next(']') {
			return nil
		}
		if !d.next(',') {
			return errSlowPath
		}
	}
}

// str decodes a string of printable ASCII without escapes.
func (d *fastDecoder) str(s *string) error {
	start, end, err := d.strBytes()
	if err == nil {
		*s = string(d.data[start:end])
	}
	return err
}

// strBytes finds a string of printable ASCII without escapes: its bytes
// are data[start:end].
func (d *fastDecoder) strBytes() (start, end int, err error) {
	if !d.next('"') {
		return 0, 0, errSlowPath
	}
	start = d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			return start, d.i - 1, nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return 0, 0, errSlowPath
		}
		d.i++
	}
	return 0, 0, errSlowPath
}

// integer decodes an integer without sign, fraction or exponent.
func (d *fastDecoder) integer(n *int) error {
	d.space()
	start, v := d.i, 0
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		if d.i-start > 15 {
			return errSlowPath
		}
		v = v*10 + int(d.data[d.i]-'0')
		d.i++
	}
	if d.i == start || d.data[start] == '0' && d.i-start > 1 {
		return errSlowPath
	}
	*n = v
	return nil
}

func (d *fastDecoder) boolean(b *bool) error {
	switch {
	case d.literal("true"):
		*b = true
	case d.literal("false"):
		*b = false
	default:
		return errSlowPath
	}
	return nil
}
