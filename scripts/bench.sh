#!/usr/bin/env bash
# make bench: a local 6-node 4+2 cluster (as make demo), then the standard
# benchmark suite against it and against a raw go-ds-flatfs on the same disk,
# in the same run. Prints the table and writes bench/results/latest.md.
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
./dsclient --conf="$WORK/client" bench --suite=standard --duration="${BENCH_DURATION:-10s}" \
	--baseline-dir="$WORK" --report=bench/results "$@"
