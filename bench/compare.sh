#!/usr/bin/env bash
# compare.sh: caddy-push side by side with Mercure and Nchan.
#
# Usage: bench/compare.sh [-h]
#
# Builds or installs what it needs (idempotent), then for each case, run and
# server starts that server alone pinned to CPU 0, runs bench/.bin/pushload
# pinned to CPU 1 against it, stops the server, and appends one JSON line to
# bench/results/<timestamp>.jsonl. At the end it prints the Markdown table
# from bench/summarize.py (also saved next to the .jsonl as .md).
#
# Environment:
#   R=3            runs of every case per server
#   QUICK=1        shrink every case about 10x (smoke run)
#   SERVERS="ours mercure nchan"      which servers to run
#   CASES="fanout_sse fanout_ws latency_sse latency_ws memory_sse memory_ws
#          scale_sse publish_rtt tls_memory_sse_h2 tls_memory_sse_h2x
#          tls_memory_sse_h1 tls_memory_ws tls_latency_sse_h2 tls_latency_ws"
#                 which cases to run
#   OURS_REF=HEAD  build caddy-push from this git revision (extracted with
#                  git archive into bench/.run/src) instead of the working
#                  tree, e.g. to compare two revisions; pushload is always
#                  built from the working tree, so both meet the same load
#   SKIP_SETUP=1   do not build or install anything (binaries must exist)
#   MERCURE_CADDY_VERSION=v2.11.3  Caddy core for the Mercure build
#
# Cases (full size; QUICK=1 divides subscriber and message counts by 10):
#   fanout_sse   1000 SSE subscribers, 1000 x 64 B flat out: CPU us/delivery.
#                One publisher, in a process of its own (-pub-process, as
#                for publish_rtt): from inside pushload it publishes only
#                when the subscribers' readers let it, and a server that
#                writes sooner then gets fewer messages to batch
#   fanout_ws    the same over WebSocket (ours, Nchan)
#   latency_sse  1000 SSE subscribers, 500 messages at 50/s: p50/p99
#   latency_ws   the same over WebSocket (ours, Nchan)
#   memory_sse   RSS growth per idle SSE connection at 5000 connections
#   memory_ws    the same over WebSocket (ours, Nchan)
#   scale_sse    15000 SSE subscribers, 1000 messages at 100/s
#   publish_rtt  1000 SSE subscribers, 3000 messages at 1000/s,
#                8 publishers: publish round trip p99. The publishers run in
#                a process of their own (pushload -pub-process) at a
#                real-time priority: the subscribers' readers keep CPU 1
#                busy, and a round trip should time the server, not them
#   publish_rtt_500  the same at 500 publishes/s (not in the default list)
#   tls_*        over HTTPS, with a self-signed certificate made with openssl
#                for the run in a temporary directory (removed at the end):
#   tls_memory_sse_h2   RSS per idle SSE subscriber at 2000, HTTP/2, one
#                       stream per connection (a browser with one tab)
#   tls_memory_sse_h2x  the same with 100 streams per connection
#   tls_memory_sse_h1   the same over HTTP/1.1 (ALPN offers http/1.1 only)
#   tls_memory_ws       the same over WebSocket (wss, HTTP/1.1)
#   tls_latency_sse_h2  1000 SSE subscribers over HTTP/2, 500 messages at 50/s
#   tls_latency_ws      the same over wss (ours, Nchan)
#                Mercure runs the SSE ones, publishing over HTTPS too.
#
# Needs: Go (/usr/local/go/bin is added to PATH), python3, taskset, curl, openssl,
# apt-get (root) for nginx + libnginx-mod-nchan. Runs as root so that it can
# raise the open-files limit to 65535 for the servers and pushload.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=$BENCH/.bin
RUN_DIR=$BENCH/.run
RESULTS=$BENCH/results
export PATH=/usr/local/go/bin:$PATH

R=${R:-3}
QUICK=${QUICK:-0}
SERVERS=${SERVERS:-"ours mercure nchan"}
CASES=${CASES:-"fanout_sse fanout_ws latency_sse latency_ws memory_sse memory_ws scale_sse publish_rtt tls_memory_sse_h2 tls_memory_sse_h2x tls_memory_sse_h1 tls_memory_ws tls_latency_sse_h2 tls_latency_ws"}
OURS_REF=${OURS_REF:-}
MERCURE_VERSION=v0.24.2
# mercure/caddy v0.24.2 requires Caddy v2.11.3.
MERCURE_CADDY_VERSION=${MERCURE_CADDY_VERSION:-v2.11.3}
XCADDY=github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
# mercure v0.24.2 pins golang.org/x/crypto/x509roots/fallback at a version
# the module proxy refuses to serve (403); replace it with a newer one.
X509ROOTS_REPLACE=golang.org/x/crypto/x509roots/fallback=golang.org/x/crypto/x509roots/fallback@v0.0.0-20261030153154-30a33513ff6d
NCHAN_MODULE=/usr/share/nginx/modules/ngx_nchan_module.so

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# CPUs: server on SERVER_CPU, load on LOAD_CPU.
SERVER_CPU=0
LOAD_CPU=1
if (($(nproc) < 2)); then
	log "warning: fewer than 2 CPUs; server and pushload share CPU 0"
	LOAD_CPU=0
fi

# ---------------------------------------------------------------- setup

setup() {
	mkdir -p "$BIN" "$RUN_DIR" "$RESULTS"
	command -v python3 >/dev/null || die "python3 is needed"
	command -v taskset >/dev/null || die "taskset (util-linux) is needed"
	command -v go >/dev/null || die "go is needed (looked in /usr/local/go/bin too)"

	local src=$ROOT
	if [[ -n $OURS_REF ]]; then
		src=$RUN_DIR/src
		rm -rf "$src" && mkdir -p "$src"
		git -C "$ROOT" archive "$OURS_REF" -- . ':(exclude)bench' | tar -x -C "$src"
	fi
	log "building pushload from $ROOT and caddy (caddy-push) from $src${OURS_REF:+ ($OURS_REF)}"
	(cd "$ROOT" && go build -o "$BIN/pushload" ./cmd/pushload)
	(cd "$src" && go build -o "$BIN/caddy" ./cmd/caddy)

	if [[ " $SERVERS " == *" mercure "* ]]; then
		local stamp="$BIN/mercure-caddy.version" want="$MERCURE_CADDY_VERSION mercure/caddy@$MERCURE_VERSION"
		if [[ -x $BIN/mercure-caddy && -f $stamp && $(cat "$stamp") == "$want" ]]; then
			log "mercure-caddy is up to date ($want)"
		else
			log "building mercure-caddy with xcaddy ($want); takes a few minutes"
			rm -f "$stamp"
			(cd "$BENCH" && go run "$XCADDY" build "$MERCURE_CADDY_VERSION" \
				--with "github.com/dunglas/mercure/caddy@$MERCURE_VERSION" \
				--replace "$X509ROOTS_REPLACE" \
				--output "$BIN/mercure-caddy")
			echo "$want" >"$stamp"
		fi
	fi

	if [[ " $SERVERS " == *" nchan "* ]]; then
		if command -v nginx >/dev/null && [[ -f $NCHAN_MODULE ]]; then
			log "nginx and nchan are installed"
		else
			log "installing nginx and libnginx-mod-nchan with apt-get"
			export DEBIAN_FRONTEND=noninteractive
			apt-get update -qq
			apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
			[[ -f $NCHAN_MODULE ]] || die "no $NCHAN_MODULE after install"
		fi
	fi
}

# make_cert: a throwaway self-signed certificate for 127.0.0.1 (P-256,
# valid two days) in a temporary directory that cleanup removes.
CERT_DIR="" CERT="" KEY=""
make_cert() {
	command -v openssl >/dev/null || die "openssl is needed for the tls_* cases"
	CERT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/push-bench-cert.XXXXXX")
	CERT=$CERT_DIR/cert.pem KEY=$CERT_DIR/key.pem
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$KEY" -out "$CERT" -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 2>/dev/null || die "openssl could not make a certificate"
	chmod 0644 "$KEY" # nginx's worker reads it after dropping root
}

# ---------------------------------------------------------------- servers

SERVER_PID=""   # the process we started (caddy, or the nginx master)
MEASURE_PID=""  # the process pushload measures (caddy, or the nginx worker)
SERVER_PORTS=()
SUB_SSE="" SUB_WS="" PUB_URL=""
SUB_SSE_TLS="" SUB_WS_TLS=""
PUB_URL_TLS="" # where the TLS cases publish, if not PUB_URL
PUB_ARGS=()

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid
	local i
	for ((i = 0; i < 200; i++)); do
		port_open "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

port_in_use() { [[ -n $(ss -Htan "( sport = :$1 )" state listening 2>/dev/null) ]]; }

stop_server() {
	[[ -n $SERVER_PID ]] || return 0
	local i
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		log "server $SERVER_PID did not stop; killing it"
		kill -KILL "$SERVER_PID" 2>/dev/null || true
	fi
	# An nginx worker outlives a killed master only briefly.
	if [[ -n $MEASURE_PID && $MEASURE_PID != "$SERVER_PID" ]]; then
		kill -KILL "$MEASURE_PID" 2>/dev/null || true
	fi
	wait "$SERVER_PID" 2>/dev/null || true
	local p
	for p in "${SERVER_PORTS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			port_in_use "$p" || break
			sleep 0.1
		done
		port_in_use "$p" && log "warning: port $p still in use"
	done
	SERVER_PID="" MEASURE_PID="" SERVER_PORTS=()
}

LOAD_PID=""
cleanup() {
	local rc=$?
	if [[ -n $LOAD_PID ]]; then
		kill -TERM "$LOAD_PID" 2>/dev/null || true
		wait "$LOAD_PID" 2>/dev/null || true
	fi
	stop_server
	[[ -n $CERT_DIR ]] && rm -rf "$CERT_DIR"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_ours() {
	local http https admin
	http=$(free_port) https=$(free_port) admin=$(free_port)
	mkdir -p "$RUN_DIR/xdg"
	BENCH_HTTP_PORT=$http BENCH_HTTPS_PORT=$https BENCH_ADMIN_PORT=$admin \
		BENCH_CERT=$CERT BENCH_KEY=$KEY \
		XDG_CONFIG_HOME=$RUN_DIR/xdg XDG_DATA_HOME=$RUN_DIR/xdg \
		taskset -c "$SERVER_CPU" "$BIN/caddy" run --adapter caddyfile \
		--config "$BENCH/caddy.Caddyfile" >"$RUN_DIR/ours.log" 2>&1 &
	SERVER_PID=$! MEASURE_PID=$! SERVER_PORTS=("$http" "$https" "$admin")
	wait_port "$http" "$SERVER_PID" && wait_port "$https" "$SERVER_PID" && wait_port "$admin" "$SERVER_PID" ||
		{ cat "$RUN_DIR/ours.log" >&2; die "caddy-push did not start"; }
	SUB_SSE="http://127.0.0.1:$http/events/bench"
	SUB_WS="ws://127.0.0.1:$http/ws/bench"
	SUB_SSE_TLS="https://127.0.0.1:$https/events/bench"
	SUB_WS_TLS="wss://127.0.0.1:$https/ws/bench"
	PUB_URL="http://127.0.0.1:$admin/push/topics/bench" PUB_URL_TLS=""
	PUB_ARGS=(-pub-body '{{payload}}')
}

mercure_jwt() { # key
	python3 - "$1" <<'PY'
import base64, hashlib, hmac, json, sys
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
body = b64(json.dumps({"mercure": {"publish": ["*"]}}, separators=(",", ":")).encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
PY
}

start_mercure() {
	local http https key jwt
	http=$(free_port) https=$(free_port)
	key=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
	jwt=$(mercure_jwt "$key")
	mkdir -p "$RUN_DIR/xdg"
	BENCH_HTTP_PORT=$http BENCH_HTTPS_PORT=$https MERCURE_PUBLISHER_JWT_KEY=$key \
		BENCH_CERT=$CERT BENCH_KEY=$KEY \
		XDG_CONFIG_HOME=$RUN_DIR/xdg XDG_DATA_HOME=$RUN_DIR/xdg \
		taskset -c "$SERVER_CPU" "$BIN/mercure-caddy" run --adapter caddyfile \
		--config "$BENCH/mercure.Caddyfile" >"$RUN_DIR/mercure.log" 2>&1 &
	SERVER_PID=$! MEASURE_PID=$! SERVER_PORTS=("$http" "$https")
	wait_port "$http" "$SERVER_PID" && wait_port "$https" "$SERVER_PID" ||
		{ cat "$RUN_DIR/mercure.log" >&2; die "mercure did not start"; }
	SUB_SSE="http://127.0.0.1:$http/.well-known/mercure?topic=bench"
	SUB_WS="" SUB_WS_TLS=""
	SUB_SSE_TLS="https://127.0.0.1:$https/.well-known/mercure?topic=bench"
	PUB_URL="http://127.0.0.1:$http/.well-known/mercure"
	PUB_URL_TLS="https://127.0.0.1:$https/.well-known/mercure"
	PUB_ARGS=(-pub-header 'Content-Type: application/x-www-form-urlencoded'
		-pub-header "Authorization: Bearer $jwt"
		-pub-body 'topic=bench&data={{payload_url}}')
}

start_nchan() {
	local http https conf="$RUN_DIR/nchan.conf" i
	http=$(free_port) https=$(free_port)
	rm -f "$RUN_DIR/nginx.pid" "$RUN_DIR/nginx-error.log"
	local nofile wc
	nofile=$(ulimit -n)
	wc=$((nofile - 64 < 40000 ? nofile - 64 : 40000))
	sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@PORT@|$http|g" -e "s|@MODULE@|$NCHAN_MODULE|g" \
		-e "s|@TLS_PORT@|$https|g" -e "s|@CERT@|$CERT|g" -e "s|@KEY@|$KEY|g" \
		-e "s|@NOFILE@|$nofile|g" -e "s|@WORKER_CONNECTIONS@|$wc|g" \
		"$BENCH/nchan.conf.template" >"$conf"
	taskset -c "$SERVER_CPU" nginx -p "$RUN_DIR" -c "$conf" >"$RUN_DIR/nchan.log" 2>&1 &
	SERVER_PID=$! MEASURE_PID="" SERVER_PORTS=("$http" "$https")
	wait_port "$http" "$SERVER_PID" && wait_port "$https" "$SERVER_PID" ||
		{ cat "$RUN_DIR/nchan.log" "$RUN_DIR/nginx-error.log" >&2 2>/dev/null; die "nginx did not start"; }
	for ((i = 0; i < 100; i++)); do
		MEASURE_PID=$(pgrep -P "$SERVER_PID" -f 'nginx: worker' | head -n1 || true)
		[[ -n $MEASURE_PID ]] && break
		sleep 0.05
	done
	[[ -n $MEASURE_PID ]] || die "no nginx worker under master $SERVER_PID"
	SUB_SSE="http://127.0.0.1:$http/sub/bench"
	SUB_WS="ws://127.0.0.1:$http/sub/bench"
	SUB_SSE_TLS="https://127.0.0.1:$https/sub/bench"
	SUB_WS_TLS="wss://127.0.0.1:$https/sub/bench"
	PUB_URL="http://127.0.0.1:$http/pub/bench" PUB_URL_TLS=""
	PUB_ARGS=(-pub-body '{{payload}}')
}

# supports server transport tls
supports() {
	[[ $1 != mercure || $2 == sse ]]
}

# ---------------------------------------------------------------- cases

# case_params name: sets TRANSPORT TLS N M RATE PUBCONC EXTRA
case_params() {
	local q=1
	[[ $QUICK == 1 ]] && q=10
	PUBCONC=1 EXTRA=() TLS=0
	case $1 in
	tls_memory_sse_h2) N=$((2000 / q)) M=1 RATE=0 EXTRA=(-http2 -settle 3s) ;;
	tls_memory_sse_h2x) N=$((2000 / q)) M=1 RATE=0 EXTRA=(-http2 -streams-per-conn 100 -settle 3s) ;;
	tls_memory_sse_h1 | tls_memory_ws) N=$((2000 / q)) M=1 RATE=0 EXTRA=(-settle 3s) ;;
	tls_latency_sse_h2) N=$((1000 / q)) M=$((500 / q)) RATE=50 EXTRA=(-http2) ;;
	tls_latency_ws) N=$((1000 / q)) M=$((500 / q)) RATE=50 ;;
	fanout_sse | fanout_ws) N=$((1000 / q)) M=$((1000 / q)) RATE=0 EXTRA=(-pub-process) ;;
	latency_sse | latency_ws) N=$((1000 / q)) M=$((500 / q)) RATE=50 ;;
	memory_sse | memory_ws) N=$((5000 / q)) M=1 RATE=0 EXTRA=(-settle 3s) ;;
	scale_sse) N=$((15000 / q)) M=$((1000 / q)) RATE=100 PUBCONC=8 ;;
	publish_rtt) N=$((1000 / q)) M=$((3000 / q)) RATE=1000 PUBCONC=8 EXTRA=(-pub-process) ;;
	publish_rtt_500) N=$((1000 / q)) M=$((3000 / q)) RATE=500 PUBCONC=8 EXTRA=(-pub-process) ;;
	*) die "unknown case $1" ;;
	esac
	TRANSPORT=${1##*_}
	[[ $TRANSPORT == sse || $TRANSPORT == ws ]] || TRANSPORT=sse
	if [[ $1 == tls_* ]]; then
		TLS=1
		[[ $1 == *_ws ]] || TRANSPORT=sse
		EXTRA+=(-insecure)
	fi
}

json_escape() {
	python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"
}

run_case() { # case server run
	local name=$1 server=$2 run=$3 sub pub out rc=0 errf="$RUN_DIR/pushload.err" outf="$RUN_DIR/pushload.out"
	case_params "$name"
	supports "$server" "$TRANSPORT" "$TLS" || return 0
	"start_$server"
	pub=$PUB_URL
	if [[ $TLS == 1 ]]; then
		if [[ $TRANSPORT == ws ]]; then sub=$SUB_WS_TLS; else sub=$SUB_SSE_TLS; fi
		pub=${PUB_URL_TLS:-$PUB_URL}
	elif [[ $TRANSPORT == ws ]]; then sub=$SUB_WS; else sub=$SUB_SSE; fi
	log "$name  $server  run $run/$R: n=$N m=$M rate=$RATE pid=$MEASURE_PID"
	# In the background, so that a signal reaches the traps at once.
	taskset -c "$LOAD_CPU" "$BIN/pushload" -json -transport "$TRANSPORT" \
		-sub "$sub" -n "$N" -m "$M" -rate "$RATE" -pub-concurrency "$PUBCONC" \
		-size 64 -pid "$MEASURE_PID" -timeout 4m -pub "$pub" "${PUB_ARGS[@]}" \
		"${EXTRA[@]}" >"$outf" 2>"$errf" &
	LOAD_PID=$!
	wait "$LOAD_PID" || rc=$?
	LOAD_PID=""
	out=$(cat "$outf")
	stop_server
	local label="\"case\":\"$name\",\"tls\":$TLS,\"server\":\"$server\",\"run\":$run,\"n\":$N,\"m\":$M,\"rate\":$RATE,\"pub_concurrency\":$PUBCONC,\"exit\":$rc"
	if [[ $out == \{* ]]; then
		echo "{$label,${out#\{}" >>"$RESULT_FILE"
		python3 - "$out" <<'PY' >&2
import json, sys
d = json.loads(sys.argv[1])
print("   connected %d/%d over %d conns  delivered %d/%d lost %d dup %d ooo %d  lat p50 %.2f p99 %.2f  pub p99 %.2f  cpu %.2f us/msg  %.1f KB/conn%s" % (
    d["connected"], d["subscribers"], d.get("connections", 0), d["delivered"], d["expected"], d["lost"], d["duplicates"], d["out_of_order"],
    d["latency_ms"]["p50"], d["latency_ms"]["p99"], d["publish_rtt_ms"]["p99"],
    d.get("cpu_us_per_delivered", 0), d.get("kb_per_conn", 0),
    ("  first error: " + d["first_error"]) if d.get("first_error") else ""))
PY
	else
		local err
		err=$(json_escape "$(head -c 2000 "$errf")")
		echo "{$label,\"error\":$err}" >>"$RESULT_FILE"
		log "   pushload failed (exit $rc): $(head -c 300 "$errf")"
	fi
}

# ---------------------------------------------------------------- main

meta_line() {
	python3 - "$@" <<'PY'
import json, os, platform, subprocess, sys
def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""
model = ""
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
r, quick, servers, cases, bench, root, ref = sys.argv[1:8]
try:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
except OSError:
    nginx = ""
nchan = sh("dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan")
print(json.dumps({"meta": {
    "started": sh("date", "-u", "+%Y-%m-%dT%H:%M:%SZ"),
    "nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
    "go": sh("go", "version"),
    "ours_ref": ref or "working tree",
    "ours_commit": sh("git", "-C", root, "rev-parse", "--short", (ref or "HEAD") + "^{commit}"),
    "ours_dirty": False if ref else bool(sh("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench")),
    "mercure": sh("cat", os.path.join(bench, ".bin", "mercure-caddy.version")),
    "nginx": nginx, "nchan": nchan,
    "r": int(r), "quick": quick == "1", "servers": servers.split(), "cases": cases.split(),
}}))
PY
}

main() {
	[[ ${SKIP_SETUP:-0} == 1 ]] || setup
	mkdir -p "$RUN_DIR" "$RESULTS"
	make_cert
	# Room for 15000 connections in the servers and in pushload. Root
	# with CAP_SYS_RESOURCE may raise the hard limit; else take it.
	ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)"
	log "open files limit: $(ulimit -n)"
	if (($(ulimit -n) < 15100)); then
		log "warning: open files limit $(ulimit -n) is below what scale_sse needs (15000 + a few)"
	fi

	local ts started=$SECONDS
	ts=$(date +%Y%m%d-%H%M%S)
	RESULT_FILE=$RESULTS/$ts.jsonl
	meta_line "$R" "$QUICK" "$SERVERS" "$CASES" "$BENCH" "$ROOT" "$OURS_REF" >"$RESULT_FILE"
	log "results: $RESULT_FILE"

	local c run s
	for c in $CASES; do
		for ((run = 1; run <= R; run++)); do
			for s in $SERVERS; do
				run_case "$c" "$s" "$run"
			done
		done
	done
	log "done in $((SECONDS - started))s"
	python3 "$BENCH/summarize.py" "$RESULT_FILE" | tee "${RESULT_FILE%.jsonl}.md"
}

main "$@"
