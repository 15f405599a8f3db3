# Sourced by demo.sh and bench.sh: start a local cluster of $NODES nodes
# (policy $K+$M, shard store $STORE, default volume) on free loopback ports
# under $WORK, with the seed README's
# commands. Sets BOOT, PIDS and exports DSCLUSTER_SECRET. The caller's EXIT
# trap runs stop_cluster.
#
# STORE=mongodb puts each node's shards in a database of its own on the
# MongoDB at $MONGODB_URI (ending in /); without it, on a FerretDB that
# mongotest/ builds and that stop_cluster stops.

declare -a PIDS=()
MONGO_PID=
MONGO_OPTS=

stop_cluster() {
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "$MONGO_PID" ]; then
		kill "$MONGO_PID" 2>/dev/null || true
		wait "$MONGO_PID" 2>/dev/null || true
	fi
}

# start_ferretdb builds and starts mongotest's FerretDB under $WORK on a
# free port, and sets MONGODB_URI.
start_ferretdb() {
	echo "building FerretDB (mongotest/; minutes from a cold cache)"
	(cd mongotest && go build -o "$WORK/ferretdb-test" ./cmd/ferretdb-test)
	"$WORK/ferretdb-test" --dir="$WORK/ferretdb" --listen=127.0.0.1:0 >"$WORK/ferretdb.log" 2>&1 &
	MONGO_PID=$!
	# FerretDB's SQLite takes one writer per database at a time, and many
	# waiting writers thrash its lock: two connections per node.
	MONGO_OPTS="?maxPoolSize=2"
	for _ in $(seq 1 200); do
		MONGODB_URI=$(sed -n 's/^ferretdb listening on //p' "$WORK/ferretdb.log")
		[ -n "$MONGODB_URI" ] && { echo "FerretDB: $MONGODB_URI"; return 0; }
		sleep 0.1
	done
	echo "FerretDB did not start; its log:" >&2
	cat "$WORK/ferretdb.log" >&2
	exit 1
}

# mongo_uri prints node $1's MongoDB URI (empty unless STORE=mongodb),
# which dscluster takes from $DSCLUSTER_MONGODB: not in the process list.
mongo_uri() {
	[ "${STORE:-volume}" = mongodb ] && echo "${MONGODB_URI}node$1$MONGO_OPTS"
	return 0
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
	if [ "${STORE:-volume}" = mongodb ] && [ -z "${MONGODB_URI:-}" ]; then
		start_ferretdb
	fi
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
	DSCLUSTER_MONGODB=$(mongo_uri 0) GOMAXPROCS=$procs ./dscluster --conf="$WORK/srv0" >"$WORK/node0.log" 2>&1 &
	PIDS[0]=$!
	wait_ready "$WORK/node0.log"
	for i in $(seq 1 $((NODES - 1))); do
		DSCLUSTER_MONGODB=$(mongo_uri "$i") GOMAXPROCS=$procs ./dscluster --conf="$WORK/srv$i" --bootstrapper="$BOOT" --identity="$i" >"$WORK/node$i.log" 2>&1 &
		PIDS[i]=$!
	done
	for i in $(seq 1 $((NODES - 1))); do wait_ready "$WORK/node$i.log"; done
	echo "all $NODES nodes ready (data under $WORK)"
	./dsclient --conf="$WORK/client" init --bootstrapper="$BOOT"
}
