#!/usr/bin/env bash
# bench/run.sh - compares fulcrum with HAProxy and nginx (SPEC §8).
#
# Starts two light backends (build/backend), then for every worker count and
# scenario runs ROUNDS interleaved rounds in which each target (fulcrum,
# haproxy, nginx, and the backends reached directly) is started fresh with the
# same worker count, warmed up, and measured once; the order of the targets
# rotates from round to round. Prints per scenario the medians and the ratios
# to the best peer (best of haproxy and nginx) and to direct, and writes them
# as Markdown to bench/results/ (plus a PNG chart when gnuplot is there).
#
# Environment (defaults in brackets):
#   WORKERS ["1 2"]   worker counts; every target gets the same
#   ROUNDS [3]        interleaved rounds, the table shows medians
#   DURATION [5]      seconds of each measured wrk run
#   WARMUP [1]        seconds of wrk before each measured run (0 = none)
#   SCENARIOS ["tcp-small tcp-bulk idle-mem"]
#                     also available: http-keepalive http-close
#   TARGETS ["fulcrum haproxy nginx direct"]
#   IDLE_CONNS [9000] idle relayed connections for idle-mem
#   BACKEND_THREADS [2] threads of each backend
#   FULCRUM [build/fulcrum]
#   RESULTS_DIR [bench/results]   BENCH_SET [scenario names]   names the file
#   NO_INSTALL        set to skip installing gnuplot-nox and nginx's stream module
#
# A scenario is a function scn_<name> that sets:
#   S_MODE   tcp | http     the kind of listener every proxy gets
#   S_KIND   wrk | idle     a load run, or the idle-memory probe
#   S_WRK    wrk options    (wrk) e.g. "-t2 -c64"
#   S_PATH   request path   (wrk)
#   S_METRIC rps | mibps    (wrk) the headline number
# Adding one is adding such a function and naming it in SCENARIOS.
# Word lists (S_WRK, TARGETS, /proc fields) are split on purpose.
# shellcheck disable=SC2086
set -u
cd "$(dirname "$0")/.." || exit 2

WORKERS=${WORKERS:-"1 2"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-"tcp-small tcp-bulk idle-mem"}
TARGETS=${TARGETS:-"fulcrum haproxy nginx direct"}
IDLE_CONNS=${IDLE_CONNS:-9000}
BACKEND_THREADS=${BACKEND_THREADS:-2}
FULCRUM=${FULCRUM:-build/fulcrum}
RESULTS_DIR=${RESULTS_DIR:-bench/results}
BENCH_SET=${BENCH_SET:-$(echo $SCENARIOS | tr ' ' '_')}
BACKEND=build/backend
IDLECONNS=build/idleconns
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
	for i in 1 2; do
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
# start_<target> MODE WORKERS sets TARGET_PID and TARGET_PORT, or returns 1.

cfg_fulcrum() { # MODE WORKERS
	cat <<EOF
[global]
workers = $2
access_log = off
admin =
log_level = warn
graceful_timeout = 1s

[pool bench]
balance = roundrobin
server = b1 127.0.0.1:${BACKEND_PORTS[0]}
server = b2 127.0.0.1:${BACKEND_PORTS[1]}
check = none
keepalive = 64
server_timeout = 1h

[listener bench]
bind = 127.0.0.1:$PROXY_PORT
mode = $1
pool = bench
client_timeout = 1h
EOF
}

cfg_haproxy() { # MODE WORKERS
	cat <<EOF
global
	nbthread $2
	maxconn $((IDLE_CONNS + 100))
	# 2 fds per connection plus 2 per pipe must stay under the hard limit
	maxpipes 256

defaults
	mode $1
	timeout connect 3s
	timeout client 1h
	timeout server 1h
	option splice-auto
EOF
	[ "$1" = http ] && cat <<EOF
	option http-keep-alive
	option forwardfor
	http-reuse safe
	timeout http-keep-alive 60s
EOF
	cat <<EOF

frontend fe
	bind 127.0.0.1:$PROXY_PORT
	default_backend be

backend be
	balance roundrobin
	server b1 127.0.0.1:${BACKEND_PORTS[0]}
	server b2 127.0.0.1:${BACKEND_PORTS[1]}
EOF
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
	local nofile=$((2 * IDLE_CONNS + 1000))
	[ "$1" = tcp ] && { nginx_stream_module || return 1; }
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
		server 127.0.0.1:${BACKEND_PORTS[0]};
		server 127.0.0.1:${BACKEND_PORTS[1]};
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
	cat <<EOF
http {
	access_log off;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
	upstream bench {
		server 127.0.0.1:${BACKEND_PORTS[0]};
		server 127.0.0.1:${BACKEND_PORTS[1]};
		keepalive 64;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:$PROXY_PORT reuseport;
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

start_fulcrum() {
	[ -x "$FULCRUM" ] || return 1
	cfg_fulcrum "$@" >"$TMP/fulcrum.ini"
	launch fulcrum "$FULCRUM" -c "$TMP/fulcrum.ini"
}

start_haproxy() {
	command -v haproxy >/dev/null || return 1
	cfg_haproxy "$@" >"$TMP/haproxy.cfg"
	launch haproxy haproxy -db -f "$TMP/haproxy.cfg"
}

start_nginx() {
	command -v nginx >/dev/null || return 1
	mkdir -p "$TMP/nginx"
	cfg_nginx "$@" >"$TMP/nginx.conf" || return 1
	launch nginx nginx -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf"
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

scn_tcp_small() { S_MODE=tcp S_KIND=wrk S_WRK="-t2 -c64" S_PATH=/ S_METRIC=rps; }
scn_tcp_bulk() { S_MODE=tcp S_KIND=wrk S_WRK="-t2 -c8" S_PATH=/large S_METRIC=mibps; }
scn_idle_mem() { S_MODE=tcp S_KIND=idle S_WRK='' S_PATH='' S_METRIC=mem; }
scn_http_keepalive() { S_MODE=http S_KIND=wrk S_WRK="-t2 -c64" S_PATH=/ S_METRIC=rps; }
scn_http_close() { S_MODE=http S_KIND=wrk S_WRK="-t2 -c64 -s $TMP/close.lua" S_PATH=/ S_METRIC=rps; }

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

# measure_wrk SCN W TARGET ROUND: one warmed-up wrk run against the target.
measure_wrk() {
	local url="http://127.0.0.1:$TARGET_PORT$S_PATH" out=$TMP/wrk.out
	local t0 t1 reqs mib metric p99 cpu=NA errs
	[ "$WARMUP" -gt 0 ] && wrk $S_WRK -d"${WARMUP}s" "$url" >/dev/null 2>&1
	[ -n "$TARGET_PID" ] && t0=$(cpu_ticks "$TARGET_PID")
	wrk $S_WRK -d"${DURATION}s" --latency "$url" >"$out" 2>&1
	[ -n "$TARGET_PID" ] && t1=$(cpu_ticks "$TARGET_PID")
	reqs=$(awk '/ requests in /{print $1}' "$out")
	if [ -z "$reqs" ] || [ "$reqs" = 0 ]; then
		log "  $3: wrk failed: $(tail -n 2 "$out" | tr '\n' ' ')"
		record "$1" "$2" "$3" "$4" NA NA NA NA
		return
	fi
	mib=$(to_mib "$(awk '/ requests in /{print $5}' "$out")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
	errs=$(awk '/Socket errors/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10}
		/Non-2xx/ {s += $NF} END {print s + 0}' "$out")
	if [ "$S_METRIC" = rps ]; then
		metric=$(awk '/^Requests\/sec:/{print $2}' "$out")
		[ -n "$TARGET_PID" ] && cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v r="$reqs" \
			'BEGIN {printf "%.3f", t / hz / (r / 100000)}')
	else
		metric=$(to_mib "$(awk '/^Transfer\/sec:/{print $2}' "$out")")
		[ -n "$TARGET_PID" ] && cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v m="$mib" \
			'BEGIN {printf "%.3f", t / hz / (m / 1024)}')
	fi
	log "  $3: $metric $(unit_of "$S_METRIC"), p99 $p99 ms, cpu $cpu, errors $errs"
	record "$1" "$2" "$3" "$4" "$metric" "$p99" "$cpu" "$errs"
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
		for t in $(rotate $((r - 1)) $TARGETS); do
			[ "$S_KIND" = idle ] && [ "$t" = direct ] && continue
			if ! "start_$t" "$S_MODE" "$w"; then
				log "  $t: n/a"
				record "$scn" "$w" "$t" "$r" NA NA NA NA
				continue
			fi
			if [ "$S_KIND" = idle ]; then
				measure_idle "$scn" "$w" "$t" "$r"
			else
				measure_wrk "$scn" "$w" "$t" "$r"
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

# best_peer: awk code setting best to the best of haproxy and nginx in val[].
BEST_PEER='
	function best_peer(m,   i, p, b) {
		b = "NA"
		for (i = 1; i <= 2; i++) {
			p = (i == 1) ? "haproxy" : "nginx"
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

# chart_data: one row per scenario and worker count, one column per target:
# the target relative to the best peer, higher is better.
chart_data() {
	local scn w
	echo "group $TARGETS"
	for w in $WORKERS; do
		for scn in $SCENARIOS; do
			"scn_${scn//-/_}"
			medians "$scn" "$w" | awk -v g="$scn/w$w" -v order="$TARGETS" -v m="$S_METRIC" \
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
	n=$(echo $TARGETS | wc -w)
	for ((i = 2; i <= n + 1; i++)); do
		cols=$(echo $TARGETS | cut -d' ' -f$((i - 1)))
		[ -n "$plot" ] && plot="$plot, "
		if [ "$i" = 2 ]; then
			plot="$plot'$TMP/chart.dat' using $i:xtic(1) title '$cols'"
		else
			plot="$plot'' using $i title '$cols'"
		fi
	done
	gnuplot <<EOF 2>"$TMP/gnuplot.err" || log "gnuplot failed: $(head -n 3 "$TMP/gnuplot.err")"
set terminal pngcairo size 1200,520 font ',10'
set output '$1'
set title 'fulcrum vs HAProxy and nginx (1.0 = best of HAProxy/nginx, higher is better)'
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
	echo "- rounds: $ROUNDS interleaved, ${DURATION}s each after ${WARMUP}s warm-up; medians shown"
	echo "- backends: 2 x build/backend, $BACKEND_THREADS threads each; direct = wrk at one backend"
	echo "- tcp-small: wrk -t2 -c64 GET / (14-byte body) through a tcp listener;" \
		"tcp-bulk: wrk -t2 -c8 GET /large (1 MiB);" \
		"idle-mem: $IDLE_CONNS idle connections, each relayed end to end first;" \
		"http-keepalive / http-close: wrk -t2 -c64 through an http listener"
	echo "- HAProxy: nbthread = workers, option splice-auto; nginx: worker_processes = workers," \
		"listen reuseport, upstream keepalive (http)"
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
			for w in $WORKERS; do
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

main() {
	local w scn
	[ -n "${NO_INSTALL:-}" ] || scripts/deps.sh gnuplot-nox libnginx-mod-stream >&2 || true
	for b in "$BACKEND" "$IDLECONNS"; do
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
	start_backends
	PROXY_PORT=$(first_free_port 18080)
	log "backends on ${BACKEND_PORTS[*]}, proxies on $PROXY_PORT, temp dir $TMP"
	for w in $WORKERS; do
		for scn in $SCENARIOS; do
			run_scenario "$scn" "$w"
		done
	done
	report
}

main "$@"
