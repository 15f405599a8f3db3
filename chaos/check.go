package chaos

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Violation is a read the model does not allow.
type Violation struct {
	Op     *Op
	Reason string
}

func (v Violation) String() string { return v.Op.String() + ": " + v.Reason }

// CheckSingleWriter judges every read of a history whose keys each have
// one writer. A read may return the last write of its key acknowledged
// before it started, any write that failed after that one (a failed write
// may or may not be stored), or a write that ran alongside it; never bytes
// that no write of the key made. ds.ErrNotFound is allowed only when one of
// those writes is a delete, or no write of the key was acknowledged before
// the read. Reads that failed are not judged (see Summary for their count).
func CheckSingleWriter(ops []*Op) []Violation {
	writes := map[string][]*Op{}
	for _, o := range ops {
		if o.Kind.write() {
			writes[o.Key] = append(writes[o.Key], o)
		}
	}
	for _, ws := range writes {
		sort.Slice(ws, func(i, j int) bool { return ws[i].Invoke < ws[j].Invoke })
	}
	var out []Violation
	for _, r := range ops {
		if r.Kind.write() || r.Kind == KindList || r.Outcome == Failed {
			continue
		}
		if reason := judgeRead(r, writes[r.Key]); reason != "" {
			out = append(out, Violation{Op: r, Reason: reason})
		}
	}
	return out
}

// judgeRead returns why read r is not allowed given the writes of its key
// (by invocation), or "".
func judgeRead(r *Op, ws []*Op) string {
	// The last write acknowledged before r started.
	var last *Op
	for _, w := range ws {
		if w.Outcome == OK && w.Return < r.Invoke && (last == nil || w.Invoke > last.Invoke) {
			last = w
		}
	}
	allowed := func(w *Op) bool {
		switch {
		case w == last:
			return true
		case w.Invoke >= r.Return:
			return false // started after the read ended
		case w.Return > r.Invoke:
			return true // ran alongside the read
		case last != nil && w.Invoke < last.Invoke:
			return false // before the last acknowledged write
		default:
			return w.Outcome == Failed
		}
	}
	if r.Outcome == NotFound {
		if last == nil {
			return ""
		}
		for _, w := range ws {
			if w.Kind == KindDelete && allowed(w) {
				return ""
			}
		}
		return fmt.Sprintf("not found, but the last acknowledged write is put %d (%s) and no delete may have followed it", last.Write, last.Value)
	}
	var stale *Op
	for _, w := range ws {
		if w.Kind != KindPut || w.Value != r.Value {
			continue
		}
		if allowed(w) {
			return ""
		}
		stale = w
	}
	if stale == nil {
		return fmt.Sprintf("returned %s, which no write of the key made", r.Value)
	}
	if last == nil {
		return fmt.Sprintf("returned the value of write %d, which the read could not see", stale.Write)
	}
	return fmt.Sprintf("returned the value of write %d, older than the acknowledged write %d", stale.Write, last.Write)
}

// registerInput is a porcupine operation's input on one key's register.
type registerInput struct {
	write bool
	value Value // a put's value; the zero Value for a delete or a read
}

// registerModel is a register per key: a put sets it, a delete clears it,
// a read returns it (the zero Value: not found).
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range history {
			k := o.Metadata.(*Op).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return out
	},
	Init: func() interface{} { return Value{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		in := input.(registerInput)
		if in.write {
			return true, in.value
		}
		return output.(Value) == state.(Value), state
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(registerInput)
		if in.write {
			return "write " + in.value.String()
		}
		return "read " + output.(Value).String()
	},
}

// CheckLinearizable checks a history with several writers per key for
// linearizability of a register per key (porcupine). A failed write is an
// operation that may take effect at any time after it started, or never;
// a failed read is left out. It returns one violation per key whose
// history is not linearizable: the first operation (by return) that no
// order of the operations before it explains. A check that runs out of
// time is reported in unknown; timeout bounds the whole check.
func CheckLinearizable(ops []*Op, timeout time.Duration) (bad []Violation, unknown bool) {
	deadline := time.Now().Add(timeout)
	var hist []porcupine.Operation
	for _, o := range ops {
		if o.Kind == KindQuery || o.Kind == KindList || (!o.Kind.write() && o.Outcome == Failed) {
			continue
		}
		po := porcupine.Operation{ClientId: o.Worker, Call: int64(o.Invoke), Return: int64(o.Return), Metadata: o}
		switch o.Kind {
		case KindPut:
			po.Input = registerInput{write: true, value: o.Value}
		case KindDelete:
			po.Input = registerInput{write: true}
		default:
			po.Input = registerInput{}
			po.Output = Value{}
			if o.Outcome == OK {
				po.Output = o.Value
			}
		}
		if o.Kind.write() {
			po.Output = Value{}
			if o.Outcome == Failed {
				po.Return = math.MaxInt64 // may take effect at any time, or never
			}
		}
		hist = append(hist, po)
	}
	parts := registerModel.Partition(hist)
	for i, part := range parts {
		// Each key gets an even share of the time left.
		share := time.Until(deadline) / time.Duration(len(parts)-i)
		if share <= 0 {
			unknown = true
			break
		}
		res, info := porcupine.CheckOperationsVerbose(registerModel, part, share)
		switch res {
		case porcupine.Illegal:
			bad = append(bad, stuckAt(part, info))
		case porcupine.Unknown:
			unknown = true
		}
	}
	return bad, unknown
}

// stuckAt returns the first operation of a key's history, by return, that
// the longest partial linearization porcupine found leaves out.
func stuckAt(part []porcupine.Operation, info porcupine.LinearizationInfo) Violation {
	var longest []porcupine.Operation
	for _, p := range info.PartialLinearizationsOperations() {
		for _, l := range p {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	in := map[*Op]bool{}
	for _, o := range longest {
		in[o.Metadata.(*Op)] = true
	}
	var first *Op
	for _, o := range part {
		op := o.Metadata.(*Op)
		if in[op] || op.Outcome == Failed {
			continue // a failed write need not take effect
		}
		if first == nil || op.Return < first.Return {
			first = op
		}
	}
	if first == nil {
		first = part[0].Metadata.(*Op)
	}
	return Violation{Op: first, Reason: fmt.Sprintf("not linearizable: no order of the %d operations linearized before it explains it", len(longest))}
}
