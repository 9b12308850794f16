#!/bin/bash
# bench/resty_instructions.sh [N]: user-space instructions per item of
# resty.streamtelecom and its floors, counted by callgrind in the nginx
# worker: a judge that does not move with the machine's load, unlike the CPU
# and wall times of bench/resty.lua (same locations, same static server).
# Each loop runs in a fresh nginx (master_process off) under valgrind, with
# instrumentation on only during the measured request (after a warm-up call
# of 50 items, so LuaJIT has compiled what it will). Slow: about 30 s a row.
# Needs valgrind; builds the LuaJIT module.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
N=${1:-2000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/streamtelecom-instr.XXXXXX")
PORT=$(( $(od -An -N2 -tu2 /dev/urandom) % 8000 + 20000 ))
SPORT=$((PORT + 2))
trap 'bench/static-nginx stop "$WORK/static" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

make -s LUA_VERSION=jit all >/dev/null
bench/static-nginx start "$SPORT" $((SPORT + 1)) "$WORK/static" >/dev/null
lua5.4 -e 'local f = io.open("bench/resty.lua"):read("a")
           io.write((f:match("local CONF = %[%[\n(.-)%]%]")))' >"$WORK/conf.in"
URL="url=http%3A%2F%2F127.0.0.1%3A$SPORT%2Fget%2F"

# instructions QUERY: the Ir of one request QUERY (n=N items) in a fresh worker.
instructions() {
  local q=$1 vp
  mkdir -p "$WORK/n/tmp"
  sed -e "s|@DIR@|$WORK/n|g" -e "s|@ROOT@|$ROOT|g" -e "s|@PORT@|$PORT|g" -e "s|@USER_LINE@||g" \
      -e "s|@OLD@||g" -e "s|@RESTY_HTTP@||g" \
      -e "s|daemon on;|daemon off; master_process off;|" "$WORK/conf.in" >"$WORK/n/nginx.conf"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
      /usr/sbin/nginx -p "$WORK/n/" -c "$WORK/n/nginx.conf" -e "$WORK/n/error.log" \
      >/dev/null 2>"$WORK/vg.log" &
  vp=$!
  for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$PORT/ping" && break; sleep 0.2; done
  curl -s "http://127.0.0.1:$PORT${q//n=N/n=50}&$URL" >/dev/null
  callgrind_control -i on "$vp" >/dev/null 2>&1
  curl -s "http://127.0.0.1:$PORT${q//n=N/n=$N}&$URL" >/dev/null
  callgrind_control -i off "$vp" >/dev/null 2>&1
  kill "$vp"
  wait "$vp" 2>/dev/null || true
  grep -o "Collected : [0-9]*" "$WORK/vg.log" | grep -o "[0-9]*$"
}

per_item() { echo $(( $1 / N )); }

echo "| loop in the nginx worker | instructions per item | ratio |"
echo "|---|---|---|"
bare=$(instructions "/bare?n=N")
resty=$(instructions "/resty?n=N")
echo "| $N sequential GETs, bare keep-alive cosocket | $(per_item "$bare") | 1 |"
echo "| $N sequential balance(), resty.streamtelecom | $(per_item "$resty") | $(awk "BEGIN { printf \"%.2f\", $resty / $bare }")× |"
for c in 20 200; do
  pool=$(instructions "/pool?n=N&c=$c")
  echo "| $N status GETs, bare pool of $c ngx.threads | $(per_item "$pool") | 1 |"
  for call in status_many send_many; do
    it=$(instructions "/bulk?n=N&c=$c&call=$call")
    echo "| $call of $N at concurrency $c | $(per_item "$it") | $(awk "BEGIN { printf \"%.2f\", $it / $pool }")× |"
  done
done
