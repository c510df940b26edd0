#!/usr/bin/env bash
# redis.sh: the memory broker against the Redis broker, side by side.
#
# Usage: bench/redis.sh [-h]
#
# For each run: "memory" starts one instance (bench/caddy-redis.Caddyfile
# without its broker) and publishes to it; "redis" starts a redis-server
# and two instances
# (bench/caddy-redis.Caddyfile), subscribers on B, publishing to A's admin
# endpoint. The subscriber instance is pinned to CPU 0; pushload, Redis
# and instance A to CPU 1. Each pushload report is one JSON line in
# bench/results/redis-<timestamp>.jsonl; medians are printed at the end.
#
# Environment:
#   R=3        runs per broker, interleaved (memory, redis, memory, ...)
#   N=1000     subscribers
#   M=500      messages
#   RATE=50    messages a second
#   TRANSPORT=sse
#   PUBC=1     publishers at once
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=$BENCH/.bin
RUN=$BENCH/.run/redis
mkdir -p "$BIN" "$RUN" "$BENCH/results"
R=${R:-3} N=${N:-1000} M=${M:-500} RATE=${RATE:-50} TRANSPORT=${TRANSPORT:-sse} PUBC=${PUBC:-1}
OUT=$BENCH/results/redis-$(date -u +%Y%m%d-%H%M%S).jsonl
ulimit -n 65535 2>/dev/null || ulimit -n 20000

(cd "$ROOT" && go build -o "$BIN/caddy" ./cmd/caddy && go build -o "$BIN/pushload" ./cmd/pushload)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# instance CPU CADDYFILE: starts caddy; sets INST_PID, INST_HTTP, INST_ADMIN.
instance() {
	INST_HTTP=$(port) INST_ADMIN=$(port)
	BENCH_HTTP_PORT=$INST_HTTP BENCH_ADMIN_PORT=$INST_ADMIN HOME=$RUN \
		taskset -c "$1" "$BIN/caddy" run --adapter caddyfile --config "$2" >>"$RUN/caddy.log" 2>&1 &
	INST_PID=$!
	PIDS+=("$INST_PID")
	for _ in $(seq 200); do
		curl -fs "http://127.0.0.1:$INST_ADMIN/push/stats" >/dev/null && return
		sleep 0.05
	done
	echo "caddy did not start; see $RUN/caddy.log" >&2
	exit 1
}

# The memory arm runs caddy-redis.Caddyfile without its broker block, so
# that the two differ in the broker alone.
sed '/broker redis/,/}/d' "$BENCH/caddy-redis.Caddyfile" >"$RUN/caddy-memory.Caddyfile"

scheme=http path=/events/
[[ $TRANSPORT == ws ]] && scheme=ws path=/ws/
load() { # broker sub_http pub_admin pid
	taskset -c 1 "$BIN/pushload" -json -transport "$TRANSPORT" -sub "$scheme://127.0.0.1:$2$path" \
		-pub "http://127.0.0.1:$3/push/topics/bench" -n "$N" -m "$M" -rate "$RATE" \
		-pub-concurrency "$PUBC" -pid "$4" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["broker"]=sys.argv[1]; print(json.dumps(r))' "$1" >>"$OUT"
}

for run in $(seq "$R"); do
	echo "run $run: memory" >&2
	instance 0 "$RUN/caddy-memory.Caddyfile"
	load memory "$INST_HTTP" "$INST_ADMIN" "$INST_PID"
	cleanup; PIDS=()

	echo "run $run: redis" >&2
	rport=$(port)
	taskset -c 1 redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$RUN" --loglevel warning >>"$RUN/redis.log" 2>&1 &
	PIDS+=("$!")
	for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
	export BENCH_REDIS_URL=redis://127.0.0.1:$rport
	instance 1 "$BENCH/caddy-redis.Caddyfile"
	a_admin=$INST_ADMIN
	instance 0 "$BENCH/caddy-redis.Caddyfile"
	load redis "$INST_HTTP" "$a_admin" "$INST_PID"
	cleanup; PIDS=()
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(b, key, sub=None):
    vals = [r[key][sub] if sub else r[key] for r in rows if r["broker"] == b]
    return statistics.median(vals) if vals else float("nan")
print("raw reports:", sys.argv[1])
print("| metric | memory | redis |")
print("|---|--:|--:|")
print("| runs | %d | %d |" % tuple(sum(r["broker"] == b for r in rows) for b in ("memory", "redis")))
for label, key, sub in [
    ("delivered", "delivered", None), ("lost", "lost", None), ("duplicates", "duplicates", None),
    ("CPU µs per delivered message (subscriber instance)", "cpu_us_per_delivered", None),
    ("latency p50 ms", "latency_ms", "p50"), ("latency p99 ms", "latency_ms", "p99"),
    ("publish RTT p50 ms", "publish_rtt_ms", "p50"), ("publish RTT p99 ms", "publish_rtt_ms", "p99"),
    ("achieved publish rate msg/s", "publish_rate", None),
]:
    print("| %s | %.4g | %.4g |" % (label, med("memory", key, sub), med("redis", key, sub)))
PY
