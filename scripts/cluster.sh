# Sourced by demo.sh and bench.sh: start a local cluster of $NODES nodes
# (policy $K+$M, shard store $STORE, default volume) on free loopback ports
# under $WORK, with the seed README's
# commands. Sets BOOT, PIDS and exports DSCLUSTER_SECRET. The caller's EXIT
# trap runs stop_cluster.

declare -a PIDS=()

stop_cluster() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}

wait_ready() { # LOGFILE
	for _ in $(seq 1 200); do
		grep -q "dscluster ready" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "node did not start; its log:" >&2
	cat "$1" >&2
	exit 1
}

start_cluster() {
	for b in dscfg dscluster dsclient; do
		[ -x "./$b" ] || { echo "./$b is missing: build it with make $b" >&2; exit 1; }
	done
	BOOT=$(./dscfg cluster --cluster-node-number="$NODES" --data-shards="$K" --parity-shards="$M" \
		--store="${STORE:-volume}" --base-port=0 --host=127.0.0.1 "$WORK/srv0" | tail -n 1)
	echo "bootstrapper: $BOOT"
	# Nodes and clients without a config need the cluster secret.
	DSCLUSTER_SECRET=$(tail -n 1 "$WORK/srv0/swarm.key")
	export DSCLUSTER_SECRET
	# The nodes share this machine's cores: give each its share, as a
	# container CPU limit would (Go reads those since 1.25). $NODES runtimes
	# that each assume all the cores spin and switch threads for nothing.
	# NODE_GOMAXPROCS overrides; clients keep every core.
	local procs=$(($(nproc) / NODES))
	((procs >= 1)) || procs=1
	procs=${NODE_GOMAXPROCS:-$procs}
	GOMAXPROCS=$procs ./dscluster --conf="$WORK/srv0" >"$WORK/node0.log" 2>&1 &
	PIDS[0]=$!
	wait_ready "$WORK/node0.log"
	for i in $(seq 1 $((NODES - 1))); do
		GOMAXPROCS=$procs ./dscluster --conf="$WORK/srv$i" --bootstrapper="$BOOT" --identity="$i" >"$WORK/node$i.log" 2>&1 &
		PIDS[i]=$!
	done
	for i in $(seq 1 $((NODES - 1))); do wait_ready "$WORK/node$i.log"; done
	echo "all $NODES nodes ready (data under $WORK)"
	./dsclient --conf="$WORK/client" init --bootstrapper="$BOOT"
}
