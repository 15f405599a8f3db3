// Package chaos runs fault runs: a seeded random workload through a
// front end while a nemesis injects faults into the cluster, with every
// read judged against a model of what the writes allow.
//
// The parts are separate so that tests and the dschaos command compose
// them:
//   - Workload generates operations (put, get, delete, batch, query) from
//     a seed, values on both sides of the small-value threshold, each
//     unique to its write; every key has one writer, or (MultiWriter)
//     several.
//   - History records each operation's invocation and completion times,
//     input, outcome and error, and the most nodes impaired while it ran.
//   - CheckSingleWriter and CheckLinearizable judge a history: a read
//     returns the last acknowledged write, a failed write after it or one
//     running alongside it, never bytes no write made, and ds.ErrNotFound
//     only after a delete; with several writers, each key's history must be
//     linearizable as a register (porcupine), a failed write being an
//     operation that may take effect at any time after it started, or never.
//   - Nemesis acts on a Target (the cluster: Procs for dscluster processes,
//     or a test's in-process cluster): kill, pause, out, leader, isolate,
//     and, on a Grower, join and drain. It never impairs more than
//     MaxImpaired nodes at once.
//   - Run puts them together: workload under the nemesis, heal, wait until
//     the cluster settles, read every key, kill Parity nodes, read every key
//     again. Its Result has the summary line and, for a failing run, a
//     report with the seed, each violation, the history of each key
//     involved and the nemesis timeline.
//
// A run is reproducible in what it asks for (the seed fixes every
// operation, value and fault), not in timing: the same seed on a loaded
// machine interleaves differently.
package chaos
