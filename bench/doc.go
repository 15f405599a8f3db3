// Package bench is the throughput benchmark harness behind `dsclient bench`
// and `make bench`.
//
// A run executes one workload against a go-datastore (the cluster front
// end) and the same workload against a baseline datastore (a raw
// go-ds-flatfs on the same disk) in the same process, so every figure can be
// read as a ratio that holds on a noisy, shared machine.
//
// Workloads:
//   - put: Put of fresh random values;
//   - get: Get of values written beforehand (not timed);
//   - mixed: 50% Put, 50% Get;
//   - degraded-get: get through a front end that treats n nodes as down
//     (they are never contacted), so values are rebuilt from parity.
//
// Latencies are measured per operation; CPU is this process's user+system
// time (getrusage), so for the cluster it is the client's share only.
package bench
