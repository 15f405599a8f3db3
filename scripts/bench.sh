#!/usr/bin/env bash
# make bench: a local 6-node 4+2 cluster (as make demo), then the standard
# benchmark suite against it and against a raw go-ds-flatfs on the same disk,
# in the same run; degraded-get stops 2 of the nodes. Prints the table and
# writes bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=6
K=4
M=2
STORE=${BENCH_STORE:-volume}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dscluster-bench.XXXXXX")
# shellcheck source=scripts/cluster.sh
. scripts/cluster.sh
trap 'stop_cluster; rm -rf "$WORK"' EXIT

start_cluster
# degraded-get stops the last $M nodes (by PID) once its values are written.
STOP="${PIDS[NODES - 1]}"
for i in $(seq 2 "$M"); do STOP="$STOP,${PIDS[NODES - i]}"; done
./dsclient --conf="$WORK/client" bench --suite=standard --duration="${BENCH_DURATION:-10s}" \
	--baseline-dir="$WORK" --report=bench/results --stop-pids="$STOP" --ceiling "$@"
