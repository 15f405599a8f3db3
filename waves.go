package dscluster

import "time"

// askInWaves asks the positions of order in waves, wave i being
// order[ends[i-1]:ends[i]] (the last end is len(order)), until settle
// judges the answers so far enough, and returns how many it asked. Each
// ask(pos) runs on a goroutine of its own (goAsk); take records each
// answer, and take, settle and hedged run on the caller's goroutine.
// settle's final is true once every position has answered, and a final
// call must settle. Answers after askInWaves returns are dropped, and no
// asker blocks.
//
// The next wave starts when this one has answered without settling, or
// after hedge, first calling hedged (when not nil) with each position
// still unanswered: a node that hangs costs hedge, not the request timeout.
func askInWaves[T any](order, ends []int, hedge time.Duration, ask func(pos int) T, take func(pos int, a T), settle func(final bool) bool, hedged func(pos int)) (asked int) {
	type answer struct {
		i int // index in order
		a T
	}
	width := len(order)
	answers := make(chan answer, width)
	// The current wave is [start, launched); waiting counts its positions
	// not answered yet (a straggler of an earlier wave, already hedged past,
	// does not hold the next wave).
	start, launched, inflight, waiting := 0, 0, 0, 0
	answered := make([]bool, width) // by index in order
	timer := time.NewTimer(hedge)
	defer timer.Stop()
	next := func() {
		for _, end := range ends {
			if end > launched {
				for i := launched; i < end; i++ {
					goAsk(func() { answers <- answer{i, ask(order[i])} })
				}
				start, waiting, launched = launched, end-launched, end
				inflight += waiting
				break
			}
		}
		timer.Reset(hedge)
	}
	next()
	for {
		select {
		case a := <-answers:
			take(order[a.i], a.a)
			answered[a.i] = true
			inflight--
			if a.i >= start {
				waiting--
			}
			if settle(launched == width && inflight == 0) {
				return launched
			}
			if waiting == 0 && launched < width {
				next() // answered, not settled: ask on at once
			}
		case <-timer.C:
			if hedged != nil {
				for i := start; i < launched; i++ {
					if !answered[i] {
						hedged(order[i])
					}
				}
			}
			if launched < width {
				next()
			}
		}
	}
}
