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

for b in dscfg dscluster dsclient; do
	[ -x "./$b" ] || { echo "demo: ./$b is missing; run make demo (it builds them)" >&2; exit 1; }
done

NODES=6
SIZE_MIB=${DEMO_SIZE_MIB:-16}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dscluster-demo.XXXXXX")
declare -a PIDS=()

cleanup() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

wait_ready() { # LOGFILE
	for _ in $(seq 1 200); do
		grep -q "dscluster ready" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "demo: node did not start; its log:" >&2
	cat "$1" >&2
	exit 1
}

step "generate a $NODES-node cluster config, policy 4+2, on free loopback ports"
BOOT=$(./dscfg cluster --cluster-node-number=$NODES --data-shards=4 --parity-shards=2 \
	--base-port=0 --host=127.0.0.1 "$WORK/srv0" | tail -n 1)
echo "bootstrapper: $BOOT"
# Nodes and clients without a config need the cluster secret.
DSCLUSTER_SECRET=$(tail -n 1 "$WORK/srv0/swarm.key")
export DSCLUSTER_SECRET

step "start the bootstrapper and $((NODES - 1)) nodes that fetch their identity from it"
./dscluster --conf="$WORK/srv0" >"$WORK/node0.log" 2>&1 &
PIDS[0]=$!
wait_ready "$WORK/node0.log"
for i in $(seq 1 $((NODES - 1))); do
	./dscluster --conf="$WORK/srv$i" --bootstrapper="$BOOT" --identity=$i >"$WORK/node$i.log" 2>&1 &
	PIDS[$i]=$!
done
for i in $(seq 1 $((NODES - 1))); do wait_ready "$WORK/node$i.log"; done
echo "all $NODES nodes ready (data under $WORK)"

step "dsclient init"
./dsclient --conf="$WORK/client" init --bootstrapper="$BOOT"

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
