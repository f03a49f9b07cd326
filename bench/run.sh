#!/usr/bin/env bash
# bench/run.sh - compares fulcrum with HAProxy, nginx and squid (SPEC §8).
#
# Starts four light backends (build/backend), then for every scenario and
# worker count runs ROUNDS interleaved rounds in which each target (fulcrum,
# haproxy, nginx, squid where it applies, and the backends reached directly)
# is started fresh with the same worker count, warmed up, and measured once;
# the order of the targets rotates from round to round. Prints per scenario
# the medians and the ratios to the best peer (best of haproxy, nginx and
# squid) and to direct, and writes them as Markdown to bench/results/ (plus a
# PNG chart when gnuplot is there).
#
# Environment (defaults in brackets):
#   WORKERS [per scenario]  worker counts; every target gets the same. Unset,
#                     each scenario uses its own list (S_WORKERS: "1 2" for
#                     the tcp-*, idle-mem and http-* ones, "1" for the rest)
#   ROUNDS [3]        interleaved rounds, the table shows medians
#   DURATION [4]      seconds of each measured run
#   WARMUP [1]        seconds of load before each measured run (0 = none)
#   SCENARIOS [all]   tcp-small tcp-bulk idle-mem http-keepalive http-close
#                     hash https-keepalive tls-handshake forward-connect cache-hit
#                     (and, not by default: tls-resume)
#   TARGETS ["fulcrum haproxy nginx squid direct"]  (each scenario keeps
#                     those of its S_TARGETS)
#   IDLE_CONNS [9000] idle relayed connections for idle-mem
#   BACKEND_THREADS [2] threads of each backend
#   FULCRUM [build/fulcrum]
#   RESULTS_DIR [bench/results]
#   BENCH_SET [all, or the scenario names]   names the result file
#   NO_INSTALL        set to skip installing gnuplot-nox, nginx's stream
#                     module and squid
#
# A scenario is a function scn_<name> that calls scn_defaults and then sets
# what differs:
#   S_MODE    tcp | http | hash | https | forward | cache: the configuration
#             every proxy gets (cfg_<target> MODE WORKERS writes it)
#   S_KIND    wrk | tunnel | idle: wrk, build/tunnel_load, or the idle probe
#   S_WRK     load options, e.g. "-t2 -c64" (tunnel_load takes -t and -c too)
#   S_PATH    request path
#   S_ENV     environment of the load tool, e.g. LD_PRELOAD=...
#   S_SCHEME  http | https: how the proxies are reached (direct: always http)
#   S_METRIC  rps | mibps | mem: the headline number
#   S_SERVERS backends in the pool (1-4)
#   S_WORKERS worker counts when WORKERS is not set
#   S_TARGETS targets that apply
#   S_DESC    one line for the report
# Adding one is adding such a function and naming it in SCENARIOS.
# Word lists (S_WRK, TARGETS, /proc fields) are split on purpose.
# shellcheck disable=SC2086
set -u
cd "$(dirname "$0")/.." || exit 2

WORKERS=${WORKERS:-} # empty: each scenario's S_WORKERS
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
ALL_SCENARIOS="tcp-small tcp-bulk idle-mem http-keepalive http-close hash https-keepalive
	tls-handshake forward-connect cache-hit"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
TARGETS=${TARGETS:-"fulcrum haproxy nginx squid direct"}
IDLE_CONNS=${IDLE_CONNS:-9000}
BACKEND_THREADS=${BACKEND_THREADS:-2}
FULCRUM=${FULCRUM:-build/fulcrum}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
if [ "$SCENARIOS" = "$ALL_SCENARIOS" ]; then
	BENCH_SET=${BENCH_SET:-all}
else
	BENCH_SET=${BENCH_SET:-$(echo $SCENARIOS | tr ' ' '_')}
fi
BACKEND=build/backend
IDLECONNS=build/idleconns
TUNNEL_LOAD=build/tunnel_load
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/fulcrum-bench.XXXXXX) || exit 2
chmod 755 "$TMP" # nginx workers may run as nobody
RES=$TMP/results.tsv
: >"$RES"
PIDS=() # every process we started and have not stopped yet

log() { printf '%s\n' "$*" >&2; }

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	PIDS=()
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
	local p keep=()
	for p in "${PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop_pid PID [SIGNAL]: ends a process we started and reaps it.
stop_pid() {
	local pid=$1 sig=${2:-TERM} i
	[ -n "$pid" ] || return 0
	kill -s "$sig" "$pid" 2>/dev/null
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -s KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	forget_pid "$pid"
}

port_is_free() { [ -z "$(ss -Htln "sport = :$1")" ]; }

# first_free_port BASE: BASE or the next free port above it.
first_free_port() {
	local p=$1
	while ! port_is_free "$p"; do
		p=$((p + 1))
	done
	echo "$p"
}

# wait_listen PID PORT: 0 once PORT listens, 1 if PID died or 10 s passed.
wait_listen() {
	local i
	for i in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 1
		port_is_free "$2" || return 0
		sleep 0.1
	done
	return 1
}

# proc_tree PID: PID and all its descendants (nginx master and workers).
proc_tree() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1"); do
		proc_tree "$c"
	done
}

# cpu_ticks PID: user+system clock ticks of PID's whole process tree.
cpu_ticks() {
	local t=0 p s
	for p in $(proc_tree "$1"); do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		s=${s##*) }
		set -- $s
		t=$((t + ${12} + ${13}))
	done
	echo "$t"
}

# rss_kb PID: resident memory of PID's whole process tree, in KiB.
rss_kb() {
	local t=0 p v
	for p in $(proc_tree "$1"); do
		v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# ---- backends --------------------------------------------------------------

start_backends() {
	local i port pid
	BACKEND_PORTS=()
	for i in 1 2 3 4; do
		port=$(first_free_port $((19000 + i)))
		"$BACKEND" -p "$port" -n "b$i" -t "$BACKEND_THREADS" >"$TMP/backend$i.out" 2>&1 &
		pid=$!
		PIDS+=("$pid")
		for _ in $(seq 50); do
			grep -q ready "$TMP/backend$i.out" && break
			sleep 0.1
		done
		grep -q ready "$TMP/backend$i.out" || {
			log "backend b$i did not start:"
			cat "$TMP/backend$i.out" >&2
			exit 2
		}
		BACKEND_PORTS+=("$port")
	done
}

# ---- targets: config writers, start and stop -------------------------------
# cfg_<target> MODE WORKERS writes the target's configuration for one
# scenario mode to stdout (returns 1 when the target cannot do that mode);
# start_<target> MODE WORKERS sets TARGET_PID and TARGET_PORT, or returns 1.
# S_SERVERS (from the scenario) is the number of backends in the pool.

# servers TEMPLATE: one line per backend of the pool, the TEMPLATE with NAME
# replaced by b1, b2... and PORT by its port.
servers() {
	local i line
	for ((i = 1; i <= S_SERVERS; i++)); do
		line=${1//NAME/b$i}
		echo "${line//PORT/${BACKEND_PORTS[$((i - 1))]}}"
	done
}

cfg_fulcrum() { # MODE WORKERS
	local mode=http balance=roundrobin
	case $1 in
	tcp | forward) mode=$1 ;;
	hash) balance=maglev ;;
	esac
	cat <<EOF
[global]
workers = $2
access_log = off
admin =
log_level = warn
graceful_timeout = 1s
EOF
	# A forward listener reaches origins by name: a pool would go unused
	# (and -t says so).
	if [ "$1" != forward ]; then
		printf '\n[pool bench]\nbalance = %s\n' "$balance"
		[ "$1" = hash ] && echo "hash_key = header:X-Key"
		servers 'server = NAME 127.0.0.1:PORT'
		printf 'check = none\nkeepalive = 64\nserver_timeout = 1h\n'
	fi
	cat <<EOF

[listener bench]
bind = 127.0.0.1:$PROXY_PORT
mode = $mode
client_timeout = 1h
EOF
	case $1 in
	forward) echo "connect_ports = *" ;;
	*) echo "pool = bench" ;;
	esac
	case $1 in
	https) printf 'tls_cert = %s\ntls_key = %s\n' "$TMP/tls/cert.pem" "$TMP/tls/key.pem" ;;
	cache) echo "cache = 64m" ;;
	esac
	return 0
}

cfg_haproxy() { # MODE WORKERS
	local mode=http bind=""
	case $1 in
	forward) return 1 ;;
	tcp) mode=tcp ;;
	https) bind=" ssl crt $TMP/tls/combined.pem" ;;
	esac
	cat <<EOF
global
	nbthread $2
	maxconn $((IDLE_CONNS + 100))
	# 2 fds per connection plus 2 per pipe must stay under the hard limit
	maxpipes 256

defaults
	mode $mode
	timeout connect 3s
	timeout client 1h
	timeout server 1h
	option splice-auto
EOF
	[ "$mode" = http ] && cat <<EOF
	option http-keep-alive
	option forwardfor
	http-reuse safe
	timeout http-keep-alive 60s
EOF
	[ "$1" = cache ] && cat <<EOF

cache bench
	total-max-size 64
	max-object-size 1048576
	max-age 3600
EOF
	cat <<EOF

frontend fe
	bind 127.0.0.1:$PROXY_PORT$bind
	default_backend be

backend be
EOF
	case $1 in
	hash) printf '\tbalance hdr(X-Key)\n\thash-type consistent\n' ;;
	*) printf '\tbalance roundrobin\n' ;;
	esac
	[ "$1" = cache ] && printf '\thttp-request cache-use bench\n\thttp-response cache-store bench\n'
	servers '	server NAME 127.0.0.1:PORT'
}

# nginx's stream module is a separate, dynamically loaded module on Debian.
nginx_stream_module() {
	local dir
	nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' || return 0
	dir=$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--modules-path=//p')
	[ -f "$dir/ngx_stream_module.so" ] || return 1
	echo "load_module $dir/ngx_stream_module.so;"
}

cfg_nginx() { # MODE WORKERS
	local nofile=$((2 * IDLE_CONNS + 1000)) ssl=""
	case $1 in
	forward) return 1 ;;
	tcp) nginx_stream_module || return 1 ;;
	esac
	cat <<EOF
worker_processes $2;
worker_rlimit_nofile $nofile;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events {
	worker_connections $nofile;
}
EOF
	if [ "$1" = tcp ]; then
		cat <<EOF
stream {
	upstream bench {
$(servers '		server 127.0.0.1:PORT;')
	}
	server {
		listen 127.0.0.1:$PROXY_PORT reuseport;
		proxy_pass bench;
		proxy_connect_timeout 3s;
		proxy_timeout 1h;
	}
}
EOF
		return 0
	fi
	[ "$1" = https ] && ssl=" ssl"
	cat <<EOF
http {
	access_log off;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
EOF
	[ "$1" = cache ] &&
		echo "	proxy_cache_path $TMP/nginx/cache levels=1:2 keys_zone=bench:8m max_size=64m inactive=1h use_temp_path=off;"
	cat <<EOF
	upstream bench {
$(servers '		server 127.0.0.1:PORT;')
EOF
	# a balancing method must come before keepalive
	[ "$1" = hash ] && echo "		hash \$http_x_key consistent;"
	cat <<EOF
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$PROXY_PORT$ssl reuseport;
EOF
	[ "$1" = https ] && cat <<EOF
		ssl_certificate $TMP/tls/cert.pem;
		ssl_certificate_key $TMP/tls/key.pem;
		# nginx before 1.23.4 leaves TLS 1.3 out by default; the others offer it
		ssl_protocols TLSv1.2 TLSv1.3;
EOF
	[ "$1" = cache ] && cat <<EOF
		proxy_cache bench;
		add_header X-Cache \$upstream_cache_status;
EOF
	cat <<EOF
		location / {
			proxy_pass http://bench;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_max_temp_file_size 0;
		}
	}
}
EOF
}

# squid is only a forward proxy here: CONNECT to the first backend's port.
# -N (no daemon, no kids) for one worker; SMP workers need the master, which
# --foreground keeps in the foreground.
cfg_squid() { # MODE WORKERS
	[ "$1" = forward ] || return 1
	cat <<EOF
http_port 127.0.0.1:$PROXY_PORT
workers $2
acl CONNECT method CONNECT
acl bench_port port ${BACKEND_PORTS[0]}
http_access allow CONNECT bench_port
http_access deny all
cache deny all
cache_mem 0 MB
access_log none
cache_store_log none
cache_log $TMP/squid/cache.log
pid_filename $TMP/squid/squid.pid
coredump_dir $TMP/squid
max_filedescriptors $(ulimit -Hn)
shutdown_lifetime 0 seconds
pinger_enable off
visible_hostname fulcrum-bench
EOF
}

# launch NAME CMD...: starts a proxy in the background and waits for its port.
launch() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	TARGET_PID=$!
	PIDS+=("$TARGET_PID")
	TARGET_PORT=$PROXY_PORT
	if ! wait_listen "$TARGET_PID" "$PROXY_PORT"; then
		log "$name did not start ($*):"
		tail -n 5 "$TMP/$name.log" >&2
		stop_pid "$TARGET_PID" KILL
		TARGET_PID=
		return 1
	fi
}

# the https mode needs the certificate made at start
have_tls() { [ "$1" != https ] || [ -f "$TMP/tls/combined.pem" ]; }

start_fulcrum() {
	[ -x "$FULCRUM" ] && have_tls "$1" || return 1
	cfg_fulcrum "$@" >"$TMP/fulcrum.ini" || return 1
	launch fulcrum "$FULCRUM" -c "$TMP/fulcrum.ini"
}

start_haproxy() {
	command -v haproxy >/dev/null && have_tls "$1" || return 1
	cfg_haproxy "$@" >"$TMP/haproxy.cfg" || return 1
	launch haproxy haproxy -db -f "$TMP/haproxy.cfg"
}

start_nginx() {
	command -v nginx >/dev/null && have_tls "$1" || return 1
	mkdir -p "$TMP/nginx"
	rm -rf "$TMP/nginx/cache" # every round starts with a cold cache
	cfg_nginx "$@" >"$TMP/nginx.conf" || return 1
	launch nginx nginx -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf"
}

start_squid() {
	local fg=-N
	command -v squid >/dev/null || return 1
	mkdir -p "$TMP/squid"
	# started as root, squid works as its cache_effective_user (proxy)
	[ "$(id -u)" = 0 ] && chown proxy "$TMP/squid" 2>/dev/null
	cfg_squid "$@" >"$TMP/squid.conf" || return 1
	[ "$2" -gt 1 ] && fg=--foreground
	launch squid squid $fg -f "$TMP/squid.conf"
}

start_direct() {
	TARGET_PID=
	TARGET_PORT=${BACKEND_PORTS[0]}
}

# fulcrum's SIGINT closes everything at once; the peers' SIGTERM does.
stop_target() { # TARGET
	case $1 in
	fulcrum) stop_pid "$TARGET_PID" INT ;;
	direct) ;;
	*) stop_pid "$TARGET_PID" TERM ;;
	esac
	TARGET_PID=
}

# ---- scenarios ---------------------------------------------------------------

scn_defaults() {
	S_MODE=http S_KIND=wrk S_WRK="-t2 -c64" S_PATH=/ S_SCHEME=http S_METRIC=rps S_ENV=""
	S_SERVERS=2 S_WORKERS="1 2" S_TARGETS="fulcrum haproxy nginx direct" S_DESC=""
}

scn_tcp_small() {
	scn_defaults
	S_MODE=tcp
	S_DESC="wrk -t2 -c64 GET / (14-byte body) through a tcp listener"
}

scn_tcp_bulk() {
	scn_defaults
	S_MODE=tcp S_WRK="-t2 -c8" S_PATH=/large S_METRIC=mibps
	S_DESC="wrk -t2 -c8 GET /large (1 MiB) through a tcp listener"
}

scn_idle_mem() {
	scn_defaults
	S_MODE=tcp S_KIND=idle S_WRK='' S_PATH='' S_METRIC=mem S_TARGETS="fulcrum haproxy nginx"
	S_DESC="$IDLE_CONNS idle connections through a tcp listener, each relayed end to end first"
}

scn_http_keepalive() {
	scn_defaults
	S_DESC="wrk -t2 -c64 GET / through an http listener, keep-alive on both sides"
}

scn_http_close() {
	scn_defaults
	S_WRK="-t2 -c64 -s $TMP/close.lua"
	S_DESC="as http-keepalive with Connection: close on every request: a new client connection per request"
}

scn_hash() {
	scn_defaults
	S_MODE=hash S_WRK="-t2 -c64 -s $TMP/hash.lua" S_SERVERS=4 S_WORKERS=1
	S_DESC="wrk -t2 -c64 GET / with X-Key cycling through 1000 values, consistent hashing on it over 4 servers (fulcrum maglev, HAProxy hdr() + hash-type consistent, nginx hash consistent)"
}

scn_https_keepalive() {
	scn_defaults
	S_MODE=https S_SCHEME=https S_WORKERS=1
	S_DESC="as http-keepalive with TLS terminated at the proxy (self-signed ECDSA P-256); direct is plain http to a backend"
}

# wrk keeps each connection's TLS session across its reconnects (SSL_clear
# keeps it) and so resumes it; NORESUME_ENV makes every handshake a full one.
scn_tls_handshake() {
	scn_defaults
	S_MODE=https S_SCHEME=https S_WRK="-t2 -c64 -s $TMP/close.lua" S_WORKERS=1
	S_ENV=$NORESUME_ENV
	S_DESC="as https-keepalive with Connection: close: a full TLS handshake per request (wrk made to resume no session); direct is plain http with close"
}

scn_tls_resume() {
	scn_tls_handshake
	S_ENV=""
	S_DESC="as tls-handshake, but wrk resumes the previous session of each connection (TLS 1.3 PSK with ECDHE, no certificate); direct is plain http with close"
}

scn_forward_connect() {
	scn_defaults
	S_MODE=forward S_KIND=tunnel S_WRK="-t2 -c8" S_PATH=/large S_METRIC=mibps S_WORKERS=1
	S_TARGETS="fulcrum squid direct"
	S_DESC="build/tunnel_load -t2 -c8: 8 CONNECT tunnels to a backend, keep-alive GET /large (1 MiB) over each (fulcrum forward listener vs squid); direct: the same without CONNECT"
}

scn_cache_hit() {
	scn_defaults
	S_MODE=cache S_PATH="/cached?maxage=3600" S_WORKERS="1 2"
	S_DESC="wrk -t2 -c64 GET of one URL answered with Cache-Control: max-age=3600 (14-byte body), cache warmed first (fulcrum cache = 64m, nginx proxy_cache, HAProxy cache); direct is the backend itself"
}

# scn_workers: the worker counts of the scenario just set up.
scn_workers() { echo "${WORKERS:-$S_WORKERS}"; }

# scn_targets: the targets of TARGETS that the scenario just set up applies to.
scn_targets() {
	local t
	for t in $TARGETS; do
		case " $S_TARGETS " in *" $t "*) echo "$t" ;; esac
	done
}

# ---- measuring ---------------------------------------------------------------

# to_ms VALUE: a wrk latency (123.45us, 1.2ms, 2.00s, 1.00m) in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = (u == "us") ? 0.001 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1
		printf "%.3f", n * f }'
}

# to_mib VALUE: a wrk byte count (12.3KB, 3.04GB) in MiB; wrk counts in 1024s.
to_mib() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		f = (u == "B") ? 1 / 1048576 : (u == "KB") ? 1 / 1024 : (u == "GB") ? 1024 : \
			(u == "TB") ? 1048576 : 1
		printf "%.3f", n * f }'
}

# record SCENARIO WORKERS TARGET ROUND METRIC P99_MS CPU ERRORS
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RES"; }

# run_wrk URL: the measured wrk run after the warm-up; leaves in L_REQS,
# L_MIB (MiB received), L_RPS, L_MIBPS, L_P99 (ms), L_ERRS and L_FAIL (why
# there is no number, or empty).
run_wrk() {
	local out=$TMP/wrk.out
	[ "$WARMUP" -gt 0 ] && env $S_ENV wrk $S_WRK -d"${WARMUP}s" "$1" >/dev/null 2>&1
	[ -n "$TARGET_PID" ] && L_T0=$(cpu_ticks "$TARGET_PID")
	env $S_ENV wrk $S_WRK -d"${DURATION}s" --latency "$1" >"$out" 2>&1
	[ -n "$TARGET_PID" ] && L_T1=$(cpu_ticks "$TARGET_PID")
	L_REQS=$(awk '/ requests in /{print $1}' "$out")
	L_FAIL=
	if [ -z "$L_REQS" ] || [ "$L_REQS" = 0 ]; then
		L_FAIL="wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
		return
	fi
	L_MIB=$(to_mib "$(awk '/ requests in /{print $5}' "$out")")
	L_RPS=$(awk '/^Requests\/sec:/{print $2}' "$out")
	L_MIBPS=$(to_mib "$(awk '/^Transfer\/sec:/{print $2}' "$out")")
	L_P99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	L_ERRS=$(awk '/Socket errors/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10}
		/Non-2xx/ {s += $NF} END {print s + 0}' "$out")
}

# run_tunnel TARGET: as run_wrk, with build/tunnel_load; the proxies get
# CONNECT to the first backend, direct gets the same GETs without it.
run_tunnel() {
	local out=$TMP/tunnel.out args=()
	[ "$1" = direct ] || args=(-C "127.0.0.1:${BACKEND_PORTS[0]}")
	# shellcheck disable=SC2206 # S_WRK is a word list
	args+=($S_WRK -p "$S_PATH")
	[ "$WARMUP" -gt 0 ] &&
		"$TUNNEL_LOAD" "${args[@]}" -d "$WARMUP" 127.0.0.1 "$TARGET_PORT" >/dev/null 2>&1
	[ -n "$TARGET_PID" ] && L_T0=$(cpu_ticks "$TARGET_PID")
	"$TUNNEL_LOAD" "${args[@]}" -d "$DURATION" 127.0.0.1 "$TARGET_PORT" >"$out" 2>"$TMP/tunnel.err"
	[ -n "$TARGET_PID" ] && L_T1=$(cpu_ticks "$TARGET_PID")
	L_REQS=$(awk '$1 == "requests" {print $2}' "$out")
	L_FAIL=
	if [ -z "$L_REQS" ] || [ "$L_REQS" = 0 ]; then
		L_FAIL="tunnel_load failed: $(tail -n 2 "$TMP/tunnel.err" | tr '\n' ' ')"
		return
	fi
	[ -s "$TMP/tunnel.err" ] && log "  $1: $(tail -n 1 "$TMP/tunnel.err")"
	L_MIB=$(awk '$1 == "bytes" {printf "%.3f", $2 / 1048576}' "$out")
	L_RPS=$(awk '/^Requests\/sec:/{print $2}' "$out")
	L_MIBPS=$(awk '/^MiB\/sec:/{print $2}' "$out")
	L_P99=$(awk '/^p99_ms:/{print $2}' "$out")
	L_ERRS=$(awk '$1 == "errors" {print $2}' "$out")
}

# measure_load SCN W TARGET ROUND: one warmed-up load run against the target.
measure_load() {
	local scheme=$S_SCHEME metric cpu=NA url
	[ "$3" = direct ] && scheme=http
	url="$scheme://127.0.0.1:$TARGET_PORT$S_PATH"
	# the cache scenario measures hits: one request fills the cache first,
	# and the next must say it was a hit where the proxy tells (fulcrum's
	# X-Cache, nginx's $upstream_cache_status in X-Cache)
	if [ "$S_MODE" = cache ]; then
		curl -ks -o /dev/null "$url"
		case $3 in
		fulcrum | nginx)
			curl -ks -D - -o /dev/null "$url" | grep -qi '^X-Cache: HIT' ||
				log "  $3: WARNING: the warmed URL is not answered from the cache"
			;;
		esac
	fi
	if [ "$S_ENV" = "$NORESUME_ENV" ] && [ ! -f "$TMP/noresume.so" ]; then
		L_FAIL="no $TMP/noresume.so (needs cc): wrk would resume TLS sessions"
	elif [ "$S_KIND" = tunnel ]; then
		run_tunnel "$3"
	else
		run_wrk "$url"
	fi
	if [ -n "$L_FAIL" ]; then
		log "  $3: $L_FAIL"
		record "$1" "$2" "$3" "$4" NA NA NA NA
		return
	fi
	if [ "$S_METRIC" = rps ]; then
		metric=$L_RPS
		[ -n "$TARGET_PID" ] && cpu=$(awk -v t=$((L_T1 - L_T0)) -v hz="$CLK_TCK" -v r="$L_REQS" \
			'BEGIN {printf "%.3f", t / hz / (r / 100000)}')
	else
		metric=$L_MIBPS
		[ -n "$TARGET_PID" ] && cpu=$(awk -v t=$((L_T1 - L_T0)) -v hz="$CLK_TCK" -v m="$L_MIB" \
			'BEGIN {printf "%.3f", t / hz / (m / 1024)}')
	fi
	log "  $3: $metric $(unit_of "$S_METRIC"), p99 $L_P99 ms, cpu $cpu, errors $L_ERRS"
	record "$1" "$2" "$3" "$4" "$metric" "$L_P99" "$cpu" "$L_ERRS"
}

# measure_idle SCN W TARGET ROUND: RSS growth per idle relayed connection.
measure_idle() {
	local out=$TMP/idle.out before after n ipid i
	sleep 0.5
	before=$(rss_kb "$TARGET_PID")
	"$IDLECONNS" -n "$IDLE_CONNS" -r -w 60 127.0.0.1 "$TARGET_PORT" >"$out" 2>"$TMP/idle.err" &
	ipid=$!
	PIDS+=("$ipid")
	for i in $(seq 900); do
		grep -q '^connected' "$out" && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	after=$(rss_kb "$TARGET_PID")
	n=$(awk '/^connected/{print $2}' "$out")
	stop_pid "$ipid" TERM
	if [ -z "$n" ] || [ "$n" -eq 0 ]; then
		log "  $3: no idle connection: $(cat "$TMP/idle.err")"
		record "$1" "$2" "$3" "$4" NA NA NA NA
		return
	fi
	[ "$n" -lt "$IDLE_CONNS" ] && log "  $3: only $n connections: $(cat "$TMP/idle.err")"
	log "  $3: $n idle connections, RSS $before -> $after KiB"
	# for idle-mem the p99 and cpu columns carry RSS before and after, in KiB
	record "$1" "$2" "$3" "$4" $(((after - before) * 1024 / n)) "$before" "$after" \
		$((IDLE_CONNS - n))
}

unit_of() {
	case $1 in
	rps) echo "req/s" ;;
	mibps) echo "MiB/s" ;;
	mem) echo "bytes/conn" ;;
	esac
}

# rotate N WORDS...: the words, starting from the N-th (0-based, wrapping).
rotate() {
	local n=$1
	shift
	local a=("$@") i
	for ((i = 0; i < ${#a[@]}; i++)); do
		echo "${a[$(((i + n) % ${#a[@]}))]}"
	done
}

run_scenario() { # SCENARIO WORKERS
	local scn=$1 w=$2 r t
	"scn_${scn//-/_}" || return
	for ((r = 1; r <= ROUNDS; r++)); do
		log "== $scn, workers=$w, round $r/$ROUNDS"
		# shellcheck disable=SC2046 # a word list
		for t in $(rotate $((r - 1)) $(scn_targets)); do
			if ! "start_$t" "$S_MODE" "$w"; then
				log "  $t: n/a"
				record "$scn" "$w" "$t" "$r" NA NA NA NA
				continue
			fi
			if [ "$S_KIND" = idle ]; then
				measure_idle "$scn" "$w" "$t" "$r"
			else
				measure_load "$scn" "$w" "$t" "$r"
			fi
			stop_target "$t"
		done
	done
}

# ---- reporting ---------------------------------------------------------------

# medians SCENARIO WORKERS: "target metric p99 cpu errors" per target, medians
# over the rounds (errors summed), NA where no round gave a number.
medians() {
	awk -F'\t' -v s="$1" -v w="$2" '
	function med(list,   a, n, i, j, x) {
		n = split(list, a, " ")
		if (n == 0) return "NA"
		for (i = 2; i <= n; i++) { x = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	$1 == s && $2 == w {
		t = $3; seen[t] = 1
		for (k = 5; k <= 7; k++) if ($k != "NA") v[t, k] = v[t, k] " " $k
		if ($8 != "NA") e[t] += $8
	}
	END { for (t in seen) print t, med(v[t, 5]), med(v[t, 6]), med(v[t, 7]), e[t] + 0 }' "$RES"
}

# best_peer: awk code giving the best of haproxy, nginx and squid in val[].
BEST_PEER='
	function best_peer(m,   i, p, b, peers) {
		b = "NA"
		split("haproxy nginx squid", peers, " ")
		for (i = 1; i <= 3; i++) {
			p = peers[i]
			if (!(p in val) || val[p] == "NA") continue
			if (b == "NA" || (m == "mem" ? val[p] < b : val[p] > b)) b = val[p]
		}
		return b
	}'

# table SCENARIO WORKERS: the Markdown table for one scenario and worker count.
table() {
	local scn=$1 w=$2 unit
	"scn_${scn//-/_}"
	unit=$(unit_of "$S_METRIC")
	echo "### $scn, workers = $w"
	echo
	echo "$S_DESC."
	echo
	case $S_METRIC in
	mem)
		echo "RSS growth per idle relayed connection (lower is better)."
		echo
		echo "| target | $unit | RSS before KiB | RSS after KiB | vs best peer | failed conns |"
		echo "|---|---:|---:|---:|---:|---:|"
		;;
	mibps)
		echo "| target | $unit | p99 ms | CPU s/GiB | vs best peer | vs direct | errors |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		;;
	*)
		echo "| target | $unit | p99 ms | CPU s/100k req | vs best peer | vs direct | errors |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
		;;
	esac
	medians "$scn" "$w" | awk -v order="$TARGETS" -v m="$S_METRIC" "$BEST_PEER"'
	function fmt(x, d) { return (x == "NA" || x == "") ? "n/a" : sprintf("%." d "f", x) }
	function ratio(x, b) { return (x == "NA" || b == "NA" || b == 0) ? "-" : sprintf("%.2fx", x / b) }
	{ val[$1] = $2; p99[$1] = $3; cpu[$1] = $4; err[$1] = ($2 == "NA") ? "-" : $5; have[$1] = 1 }
	END {
		best = best_peer(m)
		direct = ("direct" in val) ? val["direct"] : "NA"
		n = split(order, ts, " ")
		for (i = 1; i <= n; i++) {
			t = ts[i]
			if (!(t in have)) continue
			if (m == "mem")
				printf "| %s | %s | %s | %s | %s | %s |\n", t, fmt(val[t], 0),
					fmt(p99[t], 0), fmt(cpu[t], 0), ratio(val[t], best), err[t]
			else
				printf "| %s | %s | %s | %s | %s | %s | %s |\n", t,
					fmt(val[t], m == "rps" ? 0 : 1), fmt(p99[t], 2), fmt(cpu[t], 3),
					ratio(val[t], best), ratio(val[t], direct), err[t]
		}
	}'
	echo
}

# chart_targets: the proxies of TARGETS; direct stays out of the chart (next
# to TLS it would dwarf everything else), the tables have it.
chart_targets() { echo $TARGETS | tr ' ' '\n' | grep -vx direct | tr '\n' ' '; }

# chart_data: one row per scenario and worker count, one column per proxy:
# the proxy relative to the best peer, higher is better.
chart_data() {
	local scn w
	echo "group $(chart_targets)"
	for scn in $SCENARIOS; do
		"scn_${scn//-/_}"
		for w in $(scn_workers); do
			medians "$scn" "$w" | awk -v g="$scn/w$w" -v order="$(chart_targets)" -v m="$S_METRIC" \
				"$BEST_PEER"'
			{ val[$1] = $2 }
			END {
				best = best_peer(m)
				line = g
				n = split(order, ts, " ")
				for (i = 1; i <= n; i++) {
					x = val[ts[i]]
					if (x == "" || x == "NA" || best == "NA" || x == 0) r = "-"
					else r = sprintf("%.3f", m == "mem" ? best / x : x / best)
					line = line " " r
				}
				print line
			}'
		done
	done
}

chart() { # PNG
	local cols i n plot=""
	command -v gnuplot >/dev/null || {
		log "gnuplot not found: no chart"
		return 0
	}
	chart_data >"$TMP/chart.dat"
	n=$(chart_targets | wc -w)
	for ((i = 2; i <= n + 1; i++)); do
		cols=$(chart_targets | cut -d' ' -f$((i - 1)))
		[ -n "$plot" ] && plot="$plot, "
		if [ "$i" = 2 ]; then
			plot="$plot'$TMP/chart.dat' using $i:xtic(1) title '$cols'"
		else
			plot="$plot'' using $i title '$cols'"
		fi
	done
	gnuplot <<EOF 2>"$TMP/gnuplot.err" || log "gnuplot failed: $(head -n 3 "$TMP/gnuplot.err")"
set terminal pngcairo size 1400,560 font ',10'
set output '$1'
set title 'fulcrum vs HAProxy, nginx and squid (1.0 = best of them, higher is better)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set datafile missing '-'
set key autotitle columnhead top left
set yrange [0:*]
set grid ytics
set xtics rotate by -25
plot $plot
EOF
}

header() {
	echo "# fulcrum benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- commit: $(git describe --always --dirty 2>/dev/null || echo unknown)"
	echo "- host: $(uname -sr), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1))"
	echo "- peers: $(haproxy -v 2>/dev/null | head -n 1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2)"
	echo "- squid: $(squid -v 2>/dev/null | sed -n 's/^Squid Cache: Version /squid /p' | head -n 1)"
	echo "- rounds: $ROUNDS interleaved, ${DURATION}s each after ${WARMUP}s warm-up; medians shown"
	echo "- backends: 4 x build/backend (pools use the first 2, hash all 4)," \
		"$BACKEND_THREADS threads each; direct = the same load at the first backend"
	echo "- HAProxy: nbthread = workers, option splice-auto; nginx: worker_processes = workers," \
		"listen reuseport, upstream keepalive (http); squid: workers = workers"
	echo "- TLS: $TLS_DESC"
	echo
	echo "Scenarios:"
	echo
	for scn in $SCENARIOS; do
		"scn_${scn//-/_}"
		echo "- $scn (workers $(scn_workers | tr ' ' ',')): $S_DESC"
	done
	echo
}

report() {
	local scn w base
	base=$RESULTS_DIR/$(date '+%Y-%m-%d-%H%M')-$BENCH_SET
	mkdir -p "$RESULTS_DIR"
	chart "$base.png"
	{
		header
		[ -f "$base.png" ] && echo "![relative to the best peer]($(basename "$base.png"))" && echo
		for scn in $SCENARIOS; do
			"scn_${scn//-/_}"
			for w in $(scn_workers); do
				table "$scn" "$w"
			done
		done
	} >"$base.md"
	cp "$base.md" "$RESULTS_DIR/latest.md"
	[ -f "$base.png" ] && cp "$base.png" "$RESULTS_DIR/latest.png"
	echo
	cat "$base.md"
	log "written: $base.md (and .png), copied to $RESULTS_DIR/latest.md"
}

# ---- main ----------------------------------------------------------------------

# write_hash_lua: a wrk script whose requests carry X-Key, cycling through 1000
# values; the requests are formatted once, in init, so the per-request Lua
# work is a table lookup.
write_hash_lua() {
	cat <<'EOF'
local reqs, n, i = {}, 1000, 0
function init(args)
	for k = 1, n do
		reqs[k] = wrk.format(nil, nil, { ["Host"] = wrk.headers["Host"], ["X-Key"] = "key-" .. k })
	end
end
function request()
	i = i % n + 1
	return reqs[i]
end
EOF
}

# make_noresume: $TMP/noresume.so, for LD_PRELOAD into wrk: its SSL_clear
# (which wrk calls between a connection's TLS sessions) first drops the
# session, so the next handshake is a full one.
NORESUME_ENV="LD_PRELOAD=$TMP/noresume.so"
make_noresume() {
	command -v cc >/dev/null || return 0
	cat >"$TMP/noresume.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_clear(SSL *s);

int SSL_clear(SSL *s)
{
	static int (*real)(SSL *);

	if (!real)
		*(void **)&real = dlsym(RTLD_NEXT, "SSL_clear");
	SSL_set_session(s, NULL);
	return real(s);
}
EOF
	cc -shared -fPIC -O2 -Wall -o "$TMP/noresume.so" "$TMP/noresume.c" -ldl 2>"$TMP/noresume.err" ||
		log "no LD_PRELOAD shim for wrk: $(head -n 2 "$TMP/noresume.err")"
}

# make_cert: a self-signed ECDSA P-256 certificate for 127.0.0.1 in
# $TMP/tls (cert.pem, key.pem, and combined.pem for HAProxy); without the
# openssl CLI the https scenarios show n/a.
make_cert() {
	TLS_DESC="none (openssl missing)"
	command -v openssl >/dev/null || return 0
	mkdir -p "$TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
		-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>"$TMP/tls/openssl.err" || {
		log "no certificate: $(tail -n 2 "$TMP/tls/openssl.err")"
		return 0
	}
	cat "$TMP/tls/cert.pem" "$TMP/tls/key.pem" >"$TMP/tls/combined.pem"
	TLS_DESC="self-signed ECDSA P-256 certificate, every target with its TLS defaults"
	TLS_DESC="$TLS_DESC ($(openssl version | cut -d' ' -f1-2)); wrk over https"
}

main() {
	local w scn
	[ -n "${NO_INSTALL:-}" ] || scripts/deps.sh gnuplot-nox libnginx-mod-stream squid >&2 || true
	for b in "$BACKEND" "$IDLECONNS" "$TUNNEL_LOAD"; do
		[ -x "$b" ] || {
			log "$b is missing: run make first"
			exit 2
		}
	done
	command -v wrk >/dev/null || {
		log "wrk is missing: make deps-bench"
		exit 2
	}
	for scn in $SCENARIOS; do
		declare -F "scn_${scn//-/_}" >/dev/null || {
			log "unknown scenario $scn"
			exit 2
		}
	done
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
	# a new connection per request: the server closes after each answer
	echo 'wrk.headers["Connection"] = "close"' >"$TMP/close.lua"
	write_hash_lua >"$TMP/hash.lua"
	make_cert
	make_noresume
	start_backends
	PROXY_PORT=$(first_free_port 18080)
	log "backends on ${BACKEND_PORTS[*]}, proxies on $PROXY_PORT, temp dir $TMP"
	for scn in $SCENARIOS; do
		"scn_${scn//-/_}"
		for w in $(scn_workers); do
			run_scenario "$scn" "$w"
		done
	done
	report
}

main "$@"
