package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
)

// slowDecode is decodeBase's encoding/json path alone.
func slowDecode(data []byte) (baseFile, error) {
	var b baseFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&b)
	return b, err
}

// sameBase compares decoded bases as the registry uses them (a nil and an
// empty list alike).
func sameBase(a, b baseFile) bool {
	return a.Epoch == b.Epoch && a.String() == b.String() && fmt.Sprint(a.VHosts) == fmt.Sprint(b.VHosts) && fmt.Sprint(a.Forwards) == fmt.Sprint(b.Forwards)
}

// TestDecodeBaseFast: the fast decoder gives what encoding/json gives for
// the files json.Marshal and json.MarshalIndent write, and for mutations
// of them it either gives way to encoding/json or agrees with it.
func TestDecodeBaseFast(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	names := []string{"a.test", "*.w.test", "*", "web1", "10.0.0.1", "h\u00e9.test", `q"uote`, "tab\there"}
	var inputs [][]byte
	for i := 0; i < 300; i++ {
		b := baseFile{Epoch: int64(rng.IntN(3) * rng.IntN(1000))}
		for j := rng.IntN(6); j > 0; j-- {
			b.VHosts = append(b.VHosts, VHost{Host: names[rng.IntN(len(names))], To: names[rng.IntN(len(names))], Guest: rng.IntN(2) == 0, Addr: "10.0.0.2", Port: rng.IntN(65536), ToPort: rng.IntN(2) * 80})
		}
		for j := rng.IntN(3); j > 0; j-- {
			b.Forwards = append(b.Forwards, Forward{Listen: ":2222", To: names[rng.IntN(len(names))], Guest: rng.IntN(2) == 0, Addr: "10.0.0.3", Port: 22, ToPort: rng.IntN(2) * 22})
		}
		if rng.IntN(4) == 0 {
			b.VHosts = []VHost{}
		}
		m, _ := json.Marshal(b)
		ind, _ := json.MarshalIndent(b, "", "  ")
		inputs = append(inputs, m, ind)
	}
	inputs = append(inputs, []byte(`{}`), []byte(`{"vhosts":null,"forwards":null}`), []byte(`{"vhosts":[],"epoch":0}`))
	fast := 0
	for _, in := range inputs {
		want, werr := slowDecode(in)
		got, err := decodeBaseFast(in)
		if werr != nil {
			t.Fatalf("encoding/json rejects %s: %v", in, werr)
		}
		if err == nil {
			fast++
			if !sameBase(got, want) {
				t.Fatalf("%s:\nfast %+v\njson %+v", in, got, want)
			}
		} else if err != errSlowPath {
			t.Fatalf("%s: %v", in, err)
		}
		// Mutations: a byte changed, dropped or doubled.
		for k := 0; k < 30; k++ {
			mut := bytes.Clone(in)
			p := rng.IntN(len(mut))
			switch rng.IntN(3) {
			case 0:
				mut[p] = "{}[],:\"0123456789aeflnrstu -.\\\n"[rng.IntN(31)]
			case 1:
				mut = append(mut[:p], mut[p+1:]...)
			case 2:
				mut = append(mut[:p+1], mut[p:]...)
			}
			got, err := decodeBaseFast(mut)
			if err != nil {
				continue
			}
			want, werr := slowDecode(mut)
			if werr != nil || !sameBase(got, want) {
				t.Fatalf("mutated %q: fast %+v, json %+v (%v)", mut, got, want, werr)
			}
		}
	}
	if fast < len(inputs)/5 {
		t.Errorf("the fast decoder took only %d of %d inputs", fast, len(inputs))
	}
}

func BenchmarkDecodeBase10k(b *testing.B) {
	var t baseFile
	for i := 0; i < 10000; i++ {
		t.VHosts = append(t.VHosts, VHost{Host: fmt.Sprintf("v%d.bench.test", i), To: "127.0.0.1:9", Addr: "127.0.0.1", Port: 9})
	}
	data, _ := json.Marshal(t)
	for _, dec := range []struct {
		name string
		fn   func([]byte) (baseFile, error)
	}{{"fast", decodeBaseFast}, {"json", slowDecode}} {
		b.Run(dec.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := dec.fn(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
