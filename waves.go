package dscluster

import "time"

// askInWaves asks shard positions in waves until the answers settle the
// question, and returns how many positions it asked: order[:asked]. order
// lists the positions in asking order; wave i asks
// order[ends[i-1]:ends[i]], the last end being len(order). ask(pos) runs
// on a goroutine of its own per position (goAsk); take records its answer
// and settle judges the answers so far, with final true once every
// position has answered (a final call must settle). take, settle and
// hedged run on the caller's goroutine; answers after askInWaves returns
// are dropped, and no asker blocks.
//
// A wave starts when the previous one has answered without settling, or
// after hedge: a node that hangs costs hedge, not the request timeout.
// hedged, when not nil, is called with each position still unanswered
// when the hedge fires, before the next wave starts.
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
			if end <= launched {
				continue
			}
			start = launched
			for i := launched; i < end; i++ {
				goAsk(func() { answers <- answer{i, ask(order[i])} })
			}
			inflight += end - launched
			waiting = end - launched
			launched = end
			break
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
