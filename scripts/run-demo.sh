#!/usr/bin/env bash
# scripts/run-demo.sh - what `make run` starts: three demo backends (web1, web2,
# web3 on 127.0.0.1:9001-9003, answering "hello from webN" with X-Server: webN)
# and fulcrum on config/fulcrum.ini in the foreground. Ctrl-C or SIGTERM is passed
# on to fulcrum; when fulcrum ends, the backends are stopped too and the
# script exits with fulcrum's status.
#
# Environment: FULCRUM [build/fulcrum], CONFIG [config/fulcrum.ini].
set -u
cd "$(dirname "$0")/.." || exit 2
FULCRUM=${FULCRUM:-build/fulcrum}
CONFIG=${CONFIG:-config/fulcrum.ini}
BACKEND=build/backend

pids=()
fpid=
tmp=$(mktemp -d /tmp/fulcrum-demo.XXXXXX) || exit 2

# shellcheck disable=SC2317 # run by the EXIT trap
stop_all() {
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap stop_all EXIT

for b in "$BACKEND" "$FULCRUM"; do
	[ -x "$b" ] || {
		echo "run-demo: $b is missing: run make first" >&2
		exit 2
	}
done

for i in 1 2 3; do
	port=900$i
	if [ -n "$(ss -Htln "sport = :$port")" ]; then
		echo "run-demo: port $port is already in use" >&2
		exit 2
	fi
	"$BACKEND" -p "$port" -n "web$i" -t 1 >"$tmp/s$i.out" 2>&1 &
	pids+=("$!")
done
for i in 1 2 3; do
	for _ in $(seq 50); do
		grep -q ready "$tmp/s$i.out" && break
		sleep 0.1
	done
	grep -q ready "$tmp/s$i.out" || {
		echo "run-demo: backend s$i did not start: $(cat "$tmp/s$i.out")" >&2
		exit 2
	}
done
echo "run-demo: backends web1 web2 web3 on 127.0.0.1:9001-9003; starting $FULCRUM -c $CONFIG" \
	"(Ctrl-C stops)" >&2

# fulcrum runs in the background so that this shell can pass signals on; a
# non-interactive shell starts background jobs with SIGINT ignored, hence env.
env --default-signal=INT,QUIT "$FULCRUM" -c "$CONFIG" &
fpid=$!
trap 'kill -INT "$fpid" 2>/dev/null' INT
trap 'kill -TERM "$fpid" 2>/dev/null' TERM
while kill -0 "$fpid" 2>/dev/null; do
	wait "$fpid" # returns early when a trapped signal arrives
done
wait "$fpid"
exit $?
