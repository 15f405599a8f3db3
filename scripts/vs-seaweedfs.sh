#!/usr/bin/env bash
# make vs-seaweedfs: the peer a user would pick instead, on the same machine
# in the same run. SeaweedFS (1 master and 6 volume servers on loopback,
# 3 copies: replication 002, fsync on) and our 6-node 4+2 cluster (volume
# store) each put and then get COUNT values of 256 KiB at concurrency 16.
#
# SeaweedFS is built from the Go module proxy the first time (about 10
# minutes on 2 cores) into $WEED_CACHE (default ~/.cache/dscluster-weed);
# WEED=/path/to/weed uses a binary of your own. Everything the script
# starts is stopped, and its folder removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
WEED_CACHE=${WEED_CACHE:-$HOME/.cache/dscluster-weed}
COUNT=${COUNT:-3000}
NODES=6
K=4
M=2
STORE=volume
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dscluster-vs-weed.XXXXXX")
# shellcheck source=scripts/cluster.sh
. scripts/cluster.sh
declare -a WEED_PIDS=()
cleanup() {
	for pid in "${WEED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${WEED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	stop_cluster
	rm -rf "$WORK"
}
trap cleanup EXIT

build_weed() {
	local bin="$WEED_CACHE/weed-$WEED_VERSION"
	if [ ! -x "$bin" ]; then
		echo "building SeaweedFS $WEED_VERSION (once, about 10 minutes on 2 cores)" >&2
		mkdir -p "$WEED_CACHE"
		local src
		src=$(cd "$WORK" && go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
		# go install refuses the module's replace directives: build a copy.
		cp -r "$src" "$WORK/weed-src"
		chmod -R u+w "$WORK/weed-src"
		(cd "$WORK/weed-src" && go build -o "$bin" ./weed)
	fi
	echo "$bin"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # URL
	for _ in $(seq 1 300); do
		curl -sf "$1" >/dev/null 2>&1 && return 0
		sleep 0.2
	done
	echo "$1 did not answer" >&2
	exit 1
}

WEED=${WEED:-$(build_weed)}
MPORT=$(free_port)
mkdir -p "$WORK/weed/master"
"$WEED" master -ip=127.0.0.1 -port="$MPORT" -mdir="$WORK/weed/master" -telemetry=false -defaultReplication=002 >"$WORK/weed-master.log" 2>&1 &
WEED_PIDS+=($!)
wait_http "http://127.0.0.1:$MPORT/cluster/status"
for i in $(seq 0 $((NODES - 1))); do
	mkdir -p "$WORK/weed/v$i"
	"$WEED" volume -ip=127.0.0.1 -port="$(free_port)" -dir="$WORK/weed/v$i" -max=30 \
		-mserver="127.0.0.1:$MPORT" >"$WORK/weed-volume$i.log" 2>&1 &
	WEED_PIDS+=($!)
done
# Wait until the master knows every volume server.
for _ in $(seq 1 300); do
	n=$(curl -sf "http://127.0.0.1:$MPORT/dir/status" | grep -o '"Url"' | wc -l || true)
	[ "${n:-0}" -ge "$NODES" ] && break
	sleep 0.2
done
echo "SeaweedFS: 1 master, $NODES volume servers, replication 002 (3 copies), fsync" >&2
"$WEED" benchmark -master="127.0.0.1:$MPORT" -c=16 -n="$COUNT" -size=262144 -replication=002 -fsync \
	-list="$WORK/weed-list.txt" >"$WORK/weed-bench.txt" 2>&1
grep -E "Benchmark|Completed requests|Failed requests|Requests per second" "$WORK/weed-bench.txt" >&2
for pid in "${WEED_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
for pid in "${WEED_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
WEED_PIDS=()

start_cluster >/dev/null
./dsclient --conf="$WORK/client" bench --workload=put,get --size=256KiB --concurrency=16 \
	--count="$COUNT" --no-baseline >"$WORK/ours.txt" 2>&1
tail -n 3 "$WORK/ours.txt" >&2

# weed benchmark prints "Requests per second: N [#/sec]" for its write, then
# its read section.
WEED_PUT=$(grep -m1 "Requests per second" "$WORK/weed-bench.txt" | awk '{print $4}')
WEED_GET=$(grep "Requests per second" "$WORK/weed-bench.txt" | sed -n 2p | awk '{print $4}')
OUR_PUT=$(awk '$1 == "put" && $4 == "cluster" {print $5}' "$WORK/ours.txt")
OUR_GET=$(awk '$1 == "get" && $4 == "cluster" {print $5}' "$WORK/ours.txt")
printf '%s, %s values of 256 KiB at concurrency 16, one run on %s (%s cores)\n' "$(date -u +%F)" "$COUNT" "$(uname -n)" "$(nproc)"
printf '%-10s %12s %12s %s\n' workload "ours ops/s" "weed ops/s" "ours / weed"
for w in put get; do
	ours=OUR_${w^^}
	weed=WEED_${w^^}
	printf '%-10s %12s %12s %s\n' "$w" "${!ours}" "${!weed}" \
		"$(python3 -c "print(f'{${!ours}/${!weed}:.2f}x')")"
done
