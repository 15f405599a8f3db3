#!/usr/bin/env bash
# make demo: a local 6-node cluster on loopback with policy 4+2 and flatfs
# shard stores under a temporary folder. It stores a file, loses two nodes
# (SIGKILL), and gets the same bytes back; then loses a third, one more than
# the policy tolerates, to show the error a user gets.
#
# It runs the seed README's commands (dscfg, dscluster, dsclient) as a user
# would. Everything it starts is stopped, and the folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=6
K=4
M=2
STORE=flatfs # the demo's embedded default; new clusters default to the volume store
SIZE_MIB=${DEMO_SIZE_MIB:-16}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dscluster-demo.XXXXXX")
# shellcheck source=scripts/cluster.sh
. scripts/cluster.sh
trap 'stop_cluster; rm -rf "$WORK"' EXIT

step() { printf '\n==> %s\n' "$*"; }

step "start a $NODES-node cluster, policy $K+$M, $STORE shard stores, on free loopback ports: dscfg cluster, then the bootstrapper and $((NODES - 1)) nodes that fetch their identity from it, then dsclient init"
start_cluster

step "add a ${SIZE_MIB} MiB random file"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/input.bin"
CID=$(./dsclient --conf="$WORK/client" add "$WORK/input.bin" | tail -n 1)
echo "root CID: $CID"

step "get it back"
./dsclient --conf="$WORK/client" get "$CID" "$WORK/out1.bin"
cmp "$WORK/input.bin" "$WORK/out1.bin" && echo "same bytes: yes"

step "SIGKILL nodes 1 and 4 (the policy tolerates losing 2)"
kill -9 "${PIDS[1]}" "${PIDS[4]}"
wait "${PIDS[1]}" "${PIDS[4]}" 2>/dev/null || true
./dsclient --conf="$WORK/client" status || true

step "get it again with 2 nodes gone"
./dsclient --conf="$WORK/client" get "$CID" "$WORK/out2.bin"
cmp "$WORK/input.bin" "$WORK/out2.bin" && echo "same bytes with 2 of $NODES nodes lost: yes"

step "SIGKILL node 2 as well: 3 lost is one more than 4+2 tolerates"
kill -9 "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
if ./dsclient --conf="$WORK/client" get "$CID" "$WORK/out3.bin"; then
	echo "demo: get with 3 nodes lost should have failed" >&2
	exit 1
fi
echo "(that error is expected: no wrong bytes, no partial file)"

step "demo passed: stopping the remaining nodes"
