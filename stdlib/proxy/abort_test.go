package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestBodyAbortAfterEOFKeepsPipeline: a request body read to its end,
// then bodySender.wait with the sender not yet finished (it is flushing
// the last bytes to the backend: forward does this when the backend's
// answer was copied first, which heavy load makes happen) must not cut
// the connection's next request. net/http reads the connection in the
// background once a body has ended (connReader.backgroundRead); a read
// deadline in the past there cancels the connection's context, and with
// it every later request on it (the pipelined GET answered 499).
func TestBodyAbortAfterEOFKeepsPipeline(t *testing.T) {
	canceled := make(chan bool, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			db := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: time.Minute}
			defer db.Close()
			if b, err := io.ReadAll(db); err != nil || string(b) != "hi" {
				t.Errorf("body %q %v", b, err)
			}
			bs := &bodySender{ch: make(chan struct{})}
			go func() { time.Sleep(10 * time.Millisecond); close(bs.ch) }()
			bs.wait(db)
			// Give the background read the time to fail, if it is to.
			select {
			case <-r.Context().Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		canceled <- r.Context().Err() != nil
		io.WriteString(w, r.URL.Path)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi"+
		"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/slow", "/after"} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != want {
			t.Errorf("%s: %d %q", want, res.StatusCode, b)
		}
		if <-canceled {
			t.Errorf("%s: the request's context was canceled", want)
		}
	}
}
