package dscluster

import "time"

// askInWaves asks shard positions in waves and stops as soon as the
// answers settle the question. order lists the positions in the order
// they are asked, ends the (ascending) ends of the waves in it, the last
// one being len(order): wave i asks positions order[ends[i-1]:ends[i]].
// ask(pos) runs in a goroutine per position; take
// records its answer and settle judges the answers so far, with final true
// once every position has answered; it returns true when the question is
// settled (a final call always settles).
//
// A wave starts when the previous one has answered without settling, or
// when it has not all answered after hedge: a node that hangs costs a read
// hedge, not the request timeout. take and settle run on the caller's
// goroutine only; an answer that comes after askInWaves returned is
// dropped (the channel holds every answer, so no asker blocks). It returns
// how many positions it asked: order[:asked].
//
// hedged, when not nil, is called (on the caller's goroutine) with each
// position of a wave still unanswered when the hedge fires, before the
// next wave starts: the caller marks its node slow there, so that a read
// that starts after this one returned already knows.
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
				go func(i int) { answers <- answer{i, ask(order[i])} }(i)
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
