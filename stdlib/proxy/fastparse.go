package proxy

import "bytes"

// The fast path's request parser (see fastpath.go). It accepts only a
// strict subset of HTTP/1.1: what browsers, curl and load generators send
// for a GET or HEAD without a body. Anything else (a body, an unusual
// byte, a header that needs net/http's handling) is not refused here but
// handed to net/http's server, which parses the connection from then on.
// So the fast parser never has to decide what is invalid, only what is
// plainly valid; FuzzFastParse checks it against net/http's server.

// parseResult is what parseFastRequest found at the start of a buffer.
type parseResult int

const (
	parseMore parseResult = iota // no whole head yet: read more
	parseOK                      // a whole head the fast path serves
	parseSlow                    // hand the connection to net/http
)

// fastField is one request header line to forward: name as received,
// value with the surrounding blanks trimmed (as net/textproto does).
type fastField struct{ name, value []byte }

// fastRequest is a parsed request head; its slices point into the read
// buffer.
type fastRequest struct {
	head   bool   // HEAD, else GET
	target []byte // origin-form request target, as received
	host   []byte
	ua     []byte // User-Agent, for the access log
	close  bool   // Connection: close
	fields []fastField
	n      int // bytes of the head, the final empty line included
}

func (fr *fastRequest) method() string {
	if fr.head {
		return "HEAD"
	}
	return "GET"
}

// parseFastRequest parses the request head at the start of b into fr
// (whose fields slice is reused). maxFields caps the header fields, as
// Options.MaxHeaders does.
func parseFastRequest(b []byte, maxFields int, fr *fastRequest) parseResult {
	fr.fields = fr.fields[:0]
	fr.host, fr.ua, fr.close = nil, nil, false
	// Request line: "GET /target HTTP/1.1" or "HEAD ...".
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		for _, m := range [...]string{"GET ", "HEAD "} {
			if n := min(len(b), len(m)); string(b[:n]) == m[:n] {
				return parseMore
			}
		}
		return parseSlow
	}
	line := b[:i]
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return parseSlow // bare LF
	}
	line = line[:len(line)-1]
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		fr.head, line = false, line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		fr.head, line = true, line[5:]
	default:
		return parseSlow
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || string(line[sp:]) != " HTTP/1.1" || !fastTarget(line[:sp]) {
		return parseSlow
	}
	fr.target = line[:sp]
	pos := i + 1
	hosts := 0
	pragmas, cacheControl := 0, false
	for n := 0; ; n++ {
		j := bytes.IndexByte(b[pos:], '\n')
		if j < 0 {
			return parseMore
		}
		line := b[pos : pos+j]
		pos += j + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return parseSlow
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break // the end of the head
		}
		if n >= maxFields {
			return parseSlow // net/http's path answers 431
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return parseSlow // no name, obs-fold, or no colon
		}
		name, value := line[:colon], trimBlank(line[colon+1:])
		for _, c := range name {
			if !isTokenChar(c) || c == '_' {
				return parseSlow // "_": cleanRequest's rule, on net/http's path
			}
		}
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return parseSlow // control bytes, a bare CR among them
			}
		}
		switch fastHeaderKind(name) {
		case fhKeep:
			fr.fields = append(fr.fields, fastField{name, value})
		case fhDrop:
		case fhHost:
			if hosts++; hosts > 1 || !fastHost(value) {
				return parseSlow
			}
			fr.host = value
		case fhUserAgent:
			fr.ua = value
			fr.fields = append(fr.fields, fastField{name, value})
		case fhPragma:
			if pragmas++; pragmas == 1 && string(value) == "no-cache" {
				pragmas = -1 << 30 // net/http adds Cache-Control: no-cache
			}
			fr.fields = append(fr.fields, fastField{name, value})
		case fhCacheControl:
			cacheControl = true
			fr.fields = append(fr.fields, fastField{name, value})
		case fhConnection:
			switch {
			case asciiEqualFold(value, "close"):
				fr.close = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return parseSlow // tokens naming headers to drop
			}
		default:
			return parseSlow
		}
	}
	if hosts != 1 {
		return parseSlow
	}
	if pragmas < 0 && !cacheControl {
		// As net/http's server does (fixPragmaCacheControl, RFC 7234).
		fr.fields = append(fr.fields, fastField{[]byte("Cache-Control"), []byte("no-cache")})
	}
	fr.n = pos
	return parseOK
}

// Header kinds for the fast path.
const (
	fhKeep         = iota // forwarded as is
	fhDrop                // never forwarded: set by the proxy, or hop-by-hop
	fhHost                // the Host header
	fhUserAgent           // forwarded, and logged
	fhConnection          // keep-alive or close; anything else is slow
	fhPragma              // forwarded; "no-cache" first implies Cache-Control
	fhCacheControl        // forwarded
	fhSlow                // needs net/http's path
)

// fastHeaderKind sorts a header name (any case).
func fastHeaderKind(name []byte) int {
	switch len(name) {
	case 4:
		if asciiEqualFold(name, "host") {
			return fhHost
		}
	case 6:
		if asciiEqualFold(name, "pragma") {
			return fhPragma
		}
	case 13:
		if asciiEqualFold(name, "cache-control") {
			return fhCacheControl
		}
	case 10:
		switch {
		case asciiEqualFold(name, "user-agent"):
			return fhUserAgent
		case asciiEqualFold(name, "connection"):
			return fhConnection
		case asciiEqualFold(name, "keep-alive"):
			return fhDrop
		}
	}
	for _, h := range fastSlowHeaders {
		if asciiEqualFold(name, h) {
			return fhSlow
		}
	}
	for _, h := range fastDropHeaders {
		if asciiEqualFold(name, h) {
			return fhDrop
		}
	}
	return fhKeep
}

// fastSlowHeaders send a request to net/http's path: body framing, the
// hop-by-hop headers writeHead treats specially, and "Close", which a
// "Connection: close" names (cleanRequest would drop it).
var fastSlowHeaders = [...]string{
	"Content-Length", "Transfer-Encoding", "Te", "Trailer", "Upgrade",
	"Expect", "Close",
}

// fastDropHeaders are never forwarded: hop-by-hop ones and those the
// proxy sets itself (writeHead drops them alike).
var fastDropHeaders = [...]string{
	"Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

// fastTarget reports whether t is an origin-form target made of the bytes
// RFC 3986 allows in a path and query, with well-formed %-escapes.
func fastTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '%':
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return false
			}
			i += 2
		case bytes.IndexByte([]byte("-._~!$&'()*+,;=:@/?"), c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// fastHost reports whether h is a plain host name or IPv4 address with
// an optional port: letters, digits, '-' and '.', then ":digits".
func fastHost(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	port := false
	for _, c := range h {
		switch {
		case '0' <= c && c <= '9':
		case port:
			return false
		case c == ':':
			port = true
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '.':
		default:
			return false
		}
	}
	return h[0] != ':'
}

func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// fastResponse is a backend's response head as parseFastResponse reads
// it; its slices point into the backend connection's read buffer.
type fastResponse struct {
	status  int
	length  int64 // Content-Length; -1 when there is none
	close   bool  // Connection: close
	hasDate bool
	fields  []fastField // the end-to-end headers, to pass on
	n       int         // bytes of the head
}

// parseFastResponse parses the plainest responses: HTTP/1.1, a status
// of 200-599 with a reason phrase, CRLF line ends, token names, no
// control bytes, framed by one Content-Length (or bodiless: 204, 304, a
// response to HEAD), Connection: close or keep-alive at most. Anything
// else (parseSlow, or parseMore when the head is not all in b) is read
// by http.ReadResponse and checked by checkResponse instead.
func parseFastResponse(b []byte, head bool, fr *fastResponse) parseResult {
	fr.fields = fr.fields[:0]
	fr.length, fr.close, fr.hasDate = -1, false, false
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return parseMore
	}
	line := b[:i]
	if len(line) < 14 || line[len(line)-1] != '\r' || string(line[:9]) != "HTTP/1.1 " || line[12] != ' ' {
		return parseSlow
	}
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return parseSlow
		}
		status = status*10 + int(c-'0')
	}
	if status < 200 || status > 599 {
		return parseSlow
	}
	for _, c := range line[13 : len(line)-1] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return parseSlow
		}
	}
	fr.status = status
	pos := i + 1
	for {
		j := bytes.IndexByte(b[pos:], '\n')
		if j < 0 {
			return parseMore
		}
		line := b[pos : pos+j]
		pos += j + 1
		if len(line) == 0 || line[len(line)-1] != '\r' {
			return parseSlow
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || len(fr.fields) >= 256 {
			return parseSlow
		}
		name, value := line[:colon], trimBlank(line[colon+1:])
		for _, c := range name {
			if !isTokenChar(c) {
				return parseSlow
			}
		}
		for _, c := range value {
			if c < ' ' && c != '\t' || c == 0x7f {
				return parseSlow
			}
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			if fr.length >= 0 || len(value) == 0 || len(value) > 18 {
				return parseSlow
			}
			var n int64
			for _, c := range value {
				if c < '0' || c > '9' {
					return parseSlow
				}
				n = n*10 + int64(c-'0')
			}
			fr.length = n
		case asciiEqualFold(name, "connection"):
			switch {
			case asciiEqualFold(value, "close"):
				fr.close = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return parseSlow
			}
		case asciiEqualFold(name, "transfer-encoding"), asciiEqualFold(name, "trailer"):
			return parseSlow
		case asciiEqualFold(name, "keep-alive"), asciiEqualFold(name, "proxy-connection"),
			asciiEqualFold(name, "proxy-authenticate"), asciiEqualFold(name, "proxy-authorization"),
			asciiEqualFold(name, "te"), asciiEqualFold(name, "upgrade"):
			// hop-by-hop: dropped
		default:
			if asciiEqualFold(name, "date") {
				fr.hasDate = true
			}
			fr.fields = append(fr.fields, fastField{name, value})
		}
	}
	if fr.length < 0 && !head && status != 204 && status != 304 {
		return parseSlow // delimited by the connection's close
	}
	fr.n = pos
	return parseOK
}
