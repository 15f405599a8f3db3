package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// script builds a history from lines "invoke return worker kind write
// value outcome", times in milliseconds; value is a put's or a read's
// value number (0: none).
func script(t *testing.T, key string, lines ...string) []*Op {
	t.Helper()
	var ops []*Op
	for i, l := range lines {
		var inv, ret, worker, write, value int
		var kind, outcome string
		if _, err := fmt.Sscan(l, &inv, &ret, &worker, &kind, &write, &value, &outcome); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		o := &Op{ID: i, Worker: worker, Key: key, Write: write, Invoke: time.Duration(inv) * time.Millisecond,
			Return: time.Duration(ret) * time.Millisecond}
		switch kind {
		case "put":
			o.Kind = KindPut
		case "del":
			o.Kind = KindDelete
		case "get":
			o.Kind = KindGet
		default:
			t.Fatalf("line %q: kind %q", l, kind)
		}
		if value != 0 {
			o.Value = Value{Len: value, Hash: uint64(value)}
		}
		switch outcome {
		case "ok":
			o.Outcome = OK
		case "nf":
			o.Outcome = NotFound
		case "fail":
			o.Outcome = Failed
		default:
			t.Fatalf("line %q: outcome %q", l, outcome)
		}
		ops = append(ops, o)
	}
	return ops
}

func TestCheckSingleWriter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string // a part of the one violation's reason; "" for none
	}{
		{"read the acknowledged put", []string{"0 10 0 put 1 1 ok", "20 30 0 get 0 1 ok"}, ""},
		{"never written reads absent", []string{"0 10 0 get 0 0 nf"}, ""},
		{"read a value before its put is acknowledged, while it runs", []string{"0 30 0 put 1 1 ok", "10 20 1 get 0 1 ok"}, ""},
		{"older than the acknowledged put", []string{"0 10 0 put 1 1 ok", "20 30 0 put 2 2 ok", "40 50 0 get 0 1 ok"}, "older than the acknowledged write 2"},
		{"a failed put after the acknowledged one may show", []string{"0 10 0 put 1 1 ok", "20 30 0 put 2 2 fail", "40 50 0 get 0 2 ok"}, ""},
		{"or not", []string{"0 10 0 put 1 1 ok", "20 30 0 put 2 2 fail", "40 50 0 get 0 1 ok"}, ""},
		{"a failed put before the acknowledged one may not", []string{"0 10 0 put 1 1 fail", "20 30 0 put 2 2 ok", "40 50 0 get 0 1 ok"}, "older than the acknowledged write 2"},
		{"not found after an acknowledged put", []string{"0 10 0 put 1 1 ok", "20 30 0 get 0 0 nf"}, "not found, but the last acknowledged write is put 1"},
		{"not found after a failed delete", []string{"0 10 0 put 1 1 ok", "20 30 0 del 2 0 fail", "40 50 0 get 0 0 nf"}, ""},
		{"not found after an acknowledged delete", []string{"0 10 0 put 1 1 ok", "20 30 0 del 2 0 ok", "40 50 0 get 0 0 nf"}, ""},
		{"a value after an acknowledged delete", []string{"0 10 0 put 1 1 ok", "20 30 0 del 2 0 ok", "40 50 0 get 0 1 ok"}, "older than the acknowledged write 2"},
		{"bytes no write made", []string{"0 10 0 put 1 1 ok", "20 30 0 get 0 7 ok"}, "which no write of the key made"},
		{"a put that starts after the read", []string{"0 10 0 get 0 1 ok", "20 30 0 put 1 1 ok"}, "could not see"},
		{"failed reads are not judged", []string{"0 10 0 put 1 1 ok", "20 30 0 get 0 0 fail"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vs := CheckSingleWriter(script(t, "/k", tc.lines...))
			switch {
			case tc.want == "" && len(vs) > 0:
				t.Fatalf("violations %v, want none", vs)
			case tc.want != "" && len(vs) != 1:
				t.Fatalf("violations %v, want one saying %q", vs, tc.want)
			case tc.want != "" && !strings.Contains(vs[0].Reason, tc.want):
				t.Fatalf("violation %q, want one saying %q", vs[0].Reason, tc.want)
			}
		})
	}
}

func TestCheckLinearizable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		ok    bool
	}{
		{"sequential", []string{"0 10 0 put 1 1 ok", "20 30 1 get 0 1 ok"}, true},
		{"concurrent writers, read either", []string{"0 30 0 put 1 1 ok", "5 25 1 put 2 2 ok", "40 50 2 get 0 1 ok"}, true},
		{"reads disagree on order", []string{"0 30 0 put 1 1 ok", "5 25 1 put 2 2 ok", "40 50 2 get 0 1 ok", "60 70 2 get 0 2 ok", "80 90 3 get 0 1 ok"}, false},
		{"stale read after acknowledged overwrite", []string{"0 10 0 put 1 1 ok", "20 30 1 put 2 2 ok", "40 50 2 get 0 1 ok"}, false},
		{"a failed write takes effect late", []string{"0 10 0 put 1 1 ok", "20 30 1 put 2 2 fail", "40 50 2 get 0 1 ok", "60 70 2 get 0 2 ok"}, true},
		{"a failed write cannot undo a later one", []string{"0 10 0 put 1 1 fail", "20 30 1 put 2 2 ok", "40 50 2 get 0 2 ok", "60 70 2 get 0 1 ok", "80 90 2 get 0 2 ok"}, false},
		{"delete then absent", []string{"0 10 0 put 1 1 ok", "20 30 1 del 2 0 ok", "40 50 2 get 0 0 nf"}, true},
		{"absent without a delete", []string{"0 10 0 put 1 1 ok", "20 30 2 get 0 0 nf"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, unknown := CheckLinearizable(script(t, "/k", tc.lines...), 10*time.Second)
			if unknown {
				t.Fatal("check timed out")
			}
			if got := len(bad) == 0; got != tc.ok {
				t.Fatalf("linearizable = %v (violations %v), want %v", got, bad, tc.ok)
			}
			if !tc.ok && bad[0].Op.Key != "/k" {
				t.Fatalf("violation %v names another key", bad[0])
			}
		})
	}
}
