package lua

// Conversions that follow Lua 5.1's C implementation (luaO_str2d, strtoul,
// str_format, os_date), so results match the reference interpreter rather
// than Go's strconv and fmt conventions (tinyfarm patch 0002, PATCHES.md).

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// isCSpace is C's isspace in the "C" locale.
func isCSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func trimCSpace(s string) string {
	for len(s) > 0 && isCSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isCSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// str2number is luaO_str2d: the whole string, less surrounding spaces,
// must be a number as C's strtod reads it (decimal, hexadecimal, inf,
// nan), or a hexadecimal integer.
func str2number(s string) (LNumber, bool) {
	s = trimCSpace(s)
	body := s
	neg := false
	if len(body) > 0 && (body[0] == '+' || body[0] == '-') {
		neg = body[0] == '-'
		body = body[1:]
	}
	if body == "" || strings.ContainsRune(body, '_') {
		return 0, false
	}
	lower := strings.ToLower(body)
	var v float64
	switch {
	case lower == "inf" || lower == "infinity":
		v = math.Inf(1)
	case lower == "nan" || strings.HasPrefix(lower, "nan(") && strings.HasSuffix(lower, ")"):
		v = math.NaN()
	case strings.HasPrefix(lower, "0x"):
		digits := lower[2:]
		if digits == "" || digits == "." || strings.ContainsAny(digits, "+-") && !strings.Contains(digits, "p") {
			return 0, false
		}
		if !strings.Contains(digits, "p") {
			digits += "p0"
		}
		f, err := strconv.ParseFloat("0x"+digits, 64)
		if err != nil && !isRangeErr(err) {
			return 0, false
		}
		v = f
	default:
		for i := 0; i < len(lower); i++ {
			if c := lower[i]; !(c >= '0' && c <= '9' || c == '.' || c == 'e' || c == '+' || c == '-') {
				return 0, false
			}
		}
		f, err := strconv.ParseFloat(lower, 64)
		if err != nil && !isRangeErr(err) {
			return 0, false
		}
		v = f
	}
	if neg {
		v = -v
	}
	return LNumber(v), true
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// strtoul is C's strtoul for tonumber(s, base): leading spaces, a sign,
// "0x" for base 16, at least one digit and nothing but spaces after the
// digits. Unlike C, a minus gives a negative number (-36 for "-10" in base
// 36, as Lua 5.1's own test suite and Lua 5.2 expect), not 2^64-36.
func strtoul(s string, base int) (float64, bool) {
	for len(s) > 0 && isCSpace(s[0]) {
		s = s[1:]
	}
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if base == 16 && len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && digitValue(s[2]) < 16 {
		s = s[2:]
	}
	var n uint64
	overflow := false
	i := 0
	for ; i < len(s); i++ {
		d := digitValue(s[i])
		if d >= base {
			break
		}
		if n > (math.MaxUint64-uint64(d))/uint64(base) {
			overflow = true
		}
		n = n*uint64(base) + uint64(d)
	}
	if i == 0 || trimCSpace(s[i:]) != "" {
		return 0, false
	}
	if overflow {
		n = math.MaxUint64
	}
	if neg {
		return -float64(n), true
	}
	return float64(n), true
}

func digitValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return 99
}

// luaFormat is str_format of Lua 5.1's lstrlib.c. One difference is kept
// on purpose: %s formats any value with tostring, as Lua 5.2 does, where
// 5.1 accepts only strings and numbers.
func luaFormat(L *LState, format string) string {
	var b strings.Builder
	arg := 1
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i < len(format) && format[i] == '%' {
			b.WriteByte('%')
			continue
		}
		// flags, width (at most 2 digits), precision (at most 2 digits)
		start := i
		for i < len(format) && strings.IndexByte("-+ #0", format[i]) >= 0 {
			i++
		}
		if i-start > 5 {
			L.RaiseError("invalid format (repeated flags)")
		}
		flags := format[start:i]
		wstart := i
		for n := 0; n < 2 && i < len(format) && format[i] >= '0' && format[i] <= '9'; n++ {
			i++
		}
		width := format[wstart:i]
		prec, hasPrec := "", false
		if i < len(format) && format[i] == '.' {
			hasPrec = true
			i++
			pstart := i
			for n := 0; n < 2 && i < len(format) && format[i] >= '0' && format[i] <= '9'; n++ {
				i++
			}
			prec = format[pstart:i]
		}
		if i < len(format) && format[i] >= '0' && format[i] <= '9' {
			L.RaiseError("invalid format (width or precision too long)")
		}
		arg++
		if arg > L.GetTop() {
			L.ArgError(arg, "no value")
		}
		if i >= len(format) {
			L.RaiseError("invalid option '%s' to 'format'", "%")
		}
		conv := format[i]
		spec := "%" + flags + width
		if hasPrec {
			spec += "." + prec
		}
		switch conv {
		case 'c':
			// C's sprintf then strlen: the text ends at a NUL byte.
			out := padBytes(string([]byte{byte(cInt32(float64(L.CheckNumber(arg))))}), width, strings.Contains(flags, "-"))
			if z := strings.IndexByte(out, 0); z >= 0 {
				out = out[:z]
			}
			b.WriteString(out)
		case 'd', 'i':
			b.WriteString(fmt.Sprintf(spec+"d", cInt64(float64(L.CheckNumber(arg)))))
		case 'o', 'u', 'x', 'X':
			verb := string(conv)
			if conv == 'u' {
				verb = "d"
			}
			b.WriteString(fmt.Sprintf(spec+verb, cUint64(float64(L.CheckNumber(arg)))))
		case 'e', 'E', 'f', 'g', 'G':
			f := float64(L.CheckNumber(arg))
			if math.IsInf(f, 0) || math.IsNaN(f) {
				// C prints inf and nan in letters, padded with spaces.
				s := LNumber(f).String()
				if f > 0 && strings.Contains(flags, "+") {
					s = "+" + s
				} else if f > 0 && strings.Contains(flags, " ") {
					s = " " + s
				}
				if conv == 'E' || conv == 'G' {
					s = strings.ToUpper(s)
				}
				b.WriteString(padBytes(s, width, strings.Contains(flags, "-")))
				break
			}
			if !hasPrec {
				spec += ".6" // C's default precision; Go's is "shortest"
			}
			b.WriteString(fmt.Sprintf(spec+string(conv), f))
		case 'q':
			b.WriteString(addQuoted(L.CheckString(arg)))
		case 's':
			s := L.ToStringMeta(L.CheckAny(arg)).String()
			if hasPrec || len(s) < 100 {
				// Lua 5.1 formats these with sprintf: a NUL ends the string.
				if z := strings.IndexByte(s, 0); z >= 0 {
					s = s[:z]
				}
			}
			if hasPrec {
				p, _ := strconv.Atoi(prec)
				if p < len(s) {
					s = s[:p]
				}
			}
			b.WriteString(padBytes(s, width, strings.Contains(flags, "-")))
		default:
			L.RaiseError("invalid option '%%%c' to 'format'", conv)
		}
	}
	return b.String()
}

// cUint64 converts like (unsigned long)f compiled by gcc for x86-64, which
// the reference interpreter does for %o %u %x %X: below 2^63 (and nan) through
// a signed conversion, else offset by 2^63; out of range gives 0 or 2^63.
func cUint64(f float64) uint64 {
	const two63 = 9223372036854775808.0
	if f < two63 || f != f {
		return uint64(cInt64(f))
	}
	return uint64(cInt64(f-two63)) ^ (1 << 63)
}

// cInt64 is x86-64's cvttsd2si: out of range and nan give -2^63 (Go leaves
// such conversions to the platform, and 386 differs).
func cInt64(f float64) int64 {
	if f != f || f >= 9223372036854775808.0 || f < -9223372036854775808.0 {
		return math.MinInt64
	}
	return int64(f)
}

// cInt32 is (int)f on x86-64: out of range and nan give -2^31.
func cInt32(f float64) int32 {
	if f != f || f >= 2147483648.0 || f <= -2147483649.0 {
		return math.MinInt32
	}
	return int32(f)
}

// padBytes pads s to width bytes (C counts bytes; Go's fmt counts runes).
func padBytes(s, width string, left bool) string {
	w, _ := strconv.Atoi(width)
	if len(s) >= w {
		return s
	}
	pad := strings.Repeat(" ", w-len(s))
	if left {
		return s + pad
	}
	return pad + s
}

// addQuoted is %q of Lua 5.1: only ", \, newline, \r and \0 are escaped,
// and a newline becomes a backslash-newline.
func addQuoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\', '\n':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\000`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var (
	cWeekdays = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	cMonths   = []string{"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}
)

// cStrftime is C's strftime in the "C" locale, for os.date.
func cStrftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'a':
			b.WriteString(cWeekdays[t.Weekday()][:3])
		case 'A':
			b.WriteString(cWeekdays[t.Weekday()])
		case 'b', 'h':
			b.WriteString(cMonths[t.Month()-1][:3])
		case 'B':
			b.WriteString(cMonths[t.Month()-1])
		case 'c':
			b.WriteString(cStrftime(t, "%a %b %e %H:%M:%S %Y"))
		case 'C':
			fmt.Fprintf(&b, "%02d", t.Year()/100)
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'D':
			b.WriteString(cStrftime(t, "%m/%d/%y"))
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'F':
			b.WriteString(cStrftime(t, "%Y-%m-%d"))
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (t.Hour()+11)%12+1)
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'n':
			b.WriteByte('\n')
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'r':
			b.WriteString(cStrftime(t, "%I:%M:%S %p"))
		case 'R':
			b.WriteString(cStrftime(t, "%H:%M"))
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 't':
			b.WriteByte('\t')
		case 'T', 'X':
			b.WriteString(cStrftime(t, "%H:%M:%S"))
		case 'u':
			fmt.Fprintf(&b, "%d", (int(t.Weekday())+6)%7+1)
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'x':
			b.WriteString(cStrftime(t, "%m/%d/%y"))
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}

// cPow is C's pow as glibc 2.36 computes it. It differs from math.Pow only
// in the sign of nan results, which Lua 5.1 prints ("nan" or "-nan"): a nan
// argument comes back as it is, a nan base raised to an odd integer flips
// sign, and an invalid operation ((-2)^0.5) gives x86's default nan, -nan.
func cPow(x, y float64) float64 {
	switch {
	case y == 0 || x == 1:
		return 1
	case x != x:
		if math.Signbit(x) && y == math.Trunc(y) && math.Abs(y) < 1<<53 && math.Mod(y, 2) != 0 {
			return -x
		}
		return x
	case y != y:
		return y
	}
	r := math.Pow(x, y)
	if r != r {
		return -math.NaN()
	}
	return r
}
