#!/usr/bin/env bash
# lb's user-space instructions per request, counted by callgrind, loopback only.
# See bench/README.md ("Counting instructions"). Knobs (env): LB_BIN ROUNDS DURATION CONNS
# WRK_THREADS WARMUP BACKENDS LB_STRATEGY LB_FLAGS KEEP_TMP.
#
# For each mode (proxy, then redirect) and each round: a fresh lb (--threads 1, a temp data
# dir) under `valgrind --tool=callgrind --instr-atstart=no`, pool `/` in that mode with the nginx
# backend(s), WARMUP seconds of unrecorded load, then `callgrind_control -i on`, DURATION
# seconds of `wrk -t$WRK_THREADS -c$CONNS`, `-i off`, a dump; the dump's total Ir (all of lb's
# threads) divided by the requests wrk completed is that run's number.
set -euo pipefail

ROUNDS=${ROUNDS:-3}            # runs per mode; the median is reported
DURATION=${DURATION:-10}       # seconds of measured load per run
CONNS=${CONNS:-16}             # wrk connections
WRK_THREADS=${WRK_THREADS:-1}  # wrk threads
WARMUP=${WARMUP:-2}            # seconds of unrecorded load before instrumentation goes on
BACKENDS=${BACKENDS:-1}        # nginx backend ports in the pool (one nginx serves them all)
LB_STRATEGY=${LB_STRATEGY:-}   # pool strategy; empty: lb's default (p2c)
LB_FLAGS=${LB_FLAGS:-}         # extra lb flags, split on spaces; {tmp} is the run's directory

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LB_BIN=${LB_BIN:-$ROOT/target/release/lb}
LUA=$BENCH/wrk-report.lua
LIB=$BENCH/benchlib.py
H=127.0.0.1 # everything listens and is loaded on loopback only

for v in ROUNDS DURATION CONNS WRK_THREADS WARMUP BACKENDS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "callgrind.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((ROUNDS >= 1 && DURATION >= 1 && CONNS >= 1 && WRK_THREADS >= 1 && BACKENDS >= 1)) ||
  { echo "callgrind.sh: ROUNDS, DURATION, CONNS, WRK_THREADS and BACKENDS must be >= 1" >&2; exit 2; }
((WRK_THREADS <= CONNS)) || { echo "callgrind.sh: WRK_THREADS must be <= CONNS" >&2; exit 2; }

# ---- what we need (this script installs nothing) ----
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || missing+=(valgrind)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "callgrind.sh: missing: ${missing[*]}" >&2
  echo "  install with: sudo apt-get install -y ${missing[*]}" >&2
  exit 2
fi
if [[ ! -x $LB_BIN ]]; then
  echo "callgrind.sh: no lb binary at $LB_BIN: run 'cargo build --release --workspace' (or set LB_BIN)" >&2
  exit 2
fi
PATH=$PATH:/usr/sbin
NGINX=$(command -v nginx)

# ---- temp dir, cleanup ----
TMP=$(mktemp -d -t lb-callgrind.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "# temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "# $*"; }
die() { echo "callgrind.sh: error: $*" >&2; exit 1; }

# Run lb from a copy, so that a rebuild during the run cannot swap it.
cp "$LB_BIN" "$TMP/lb"

read -r -a PORTS < <(python3 "$LIB" ports $((BACKENDS + 2)))
P_LB=${PORTS[0]}
P_ADMIN=${PORTS[1]}
P_BACKENDS=("${PORTS[@]:2}")

echo "lb instructions per request (callgrind), $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "lb binary:  $LB_BIN, built $(date -u -r "$LB_BIN" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$LB_BIN" | cut -c1-12)"
echo "tools:      $(valgrind --version), $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "settings:   ROUNDS=$ROUNDS DURATION=${DURATION}s CONNS=$CONNS WRK_THREADS=$WRK_THREADS WARMUP=${WARMUP}s" \
  "BACKENDS=$BACKENDS LB_STRATEGY=${LB_STRATEGY:-default}, lb --threads 1${LB_FLAGS:+ $LB_FLAGS}"

# ---- backend: one nginx, one worker, a small fixed body (as in compare.sh) ----
USER_LINE=""
if [[ $(id -u) == 0 ]]; then USER_LINE="user root;"; fi
mkdir -p "$TMP/backend/logs"
LISTEN=""
for p in "${P_BACKENDS[@]}"; do LISTEN+="    listen $H:$p;"$'\n'; done
cat >"$TMP/backend/nginx.conf" <<EOF
$USER_LINE
worker_processes 1;
daemon off;
master_process on;
pid $TMP/backend/nginx.pid;
error_log $TMP/backend/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $TMP/backend/client_body;
  proxy_temp_path $TMP/backend/proxy;
  fastcgi_temp_path $TMP/backend/fastcgi;
  uwsgi_temp_path $TMP/backend/uwsgi;
  scgi_temp_path $TMP/backend/scgi;
  default_type text/plain;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {
$LISTEN
    location / { return 200 'hello from nginx\n'; }
    location = /healthz { return 200 'ok'; }
  }
}
EOF
"$NGINX" -p "$TMP/backend" -c "$TMP/backend/nginx.conf" -e "$TMP/backend/logs/error.log" >"$TMP/backend.out" 2>&1 &
PIDS+=($!)

wait_code() { # $1 url, $2 expected status, $3 what, $4 tries of 0.1 s (default 100)
  local code
  for _ in $(seq "${4:-100}"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true)
    [[ $code == "$2" ]] && return 0
    sleep 0.1
  done
  die "$3: $1 answered '$code', expected $2 (logs in $TMP, rerun with KEEP_TMP=1 to keep them)"
}
for p in "${P_BACKENDS[@]}"; do wait_code "http://$H:$p/" 200 "backend $p"; done

ADMIN=http://$H:$P_ADMIN
api() { # $1 method, $2 path, $3 body, $4 expected status
  local code
  code=$(curl -s -o "$TMP/api.out" -w '%{http_code}' --max-time 60 -X "$1" "$ADMIN$2" \
    -H 'Content-Type: application/json' ${3:+-d "$3"})
  [[ $code == "$4" ]] || die "lb admin $1 $2 answered $code, expected $4: $(head -c 300 "$TMP/api.out")"
}

# Runs a command in the background and waits for it, so that a signal stops the script at once
# (bash runs traps only after a foreground child has exited).
bg_wait() {
  "$@" &
  local pid=$!
  PIDS+=("$pid")
  wait "$pid"
}

# One measured run: sets IR and REQUESTS.
measure() { # $1 mode (proxy|redirect), $2 run number
  local mode=$1 dir=$TMP/$1-$2 expect=2xx code=200 lb_pid out line extra
  [[ $mode == redirect ]] && { expect=307; code=307; }
  mkdir -p "$dir"
  read -r -a extra <<<"${LB_FLAGS//\{tmp\}/$dir}"
  # callgrind_control finds the process through vgdb; the working directory holds the dumps.
  (cd "$dir" && LB_LOG=warn exec valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$dir/callgrind.out" \
    "$TMP/lb" --listen "$H:$P_LB" --admin "$H:$P_ADMIN" --data-dir "$dir/data" --threads 1 \
    "${extra[@]}" >"$dir/lb.out" 2>&1) &
  lb_pid=$!
  PIDS+=("$lb_pid")
  wait_code "$ADMIN/healthz" 200 "lb admin (under valgrind)" 600

  local pool="{\"pattern\": \"/\", \"mode\": \"$mode\"${LB_STRATEGY:+, \"strategy\": \"$LB_STRATEGY\"}}"
  api POST /v1/pools "$pool" 201
  for p in "${P_BACKENDS[@]}"; do
    api POST "/v1/pool/backends?pattern=/" "{\"ip\": \"$H\", \"port\": $p, \"url_path\": \"/\"}" 201
  done
  wait_code "http://$H:$P_LB/" "$code" "lb $mode"

  if ((WARMUP > 0)); then
    bg_wait timeout $((WARMUP + 60)) wrk -t "$WRK_THREADS" -c "$CONNS" -d "${WARMUP}s" "http://$H:$P_LB/" \
      >"$dir/wrk-warmup.txt" 2>&1 || die "warm-up wrk failed: $(tail -3 "$dir/wrk-warmup.txt")"
  fi

  timeout 60 callgrind_control -z "$lb_pid" >"$dir/cc-zero.txt" 2>&1 ||
    die "callgrind_control -z failed: $(tail -3 "$dir/cc-zero.txt")"
  timeout 60 callgrind_control -i on "$lb_pid" >"$dir/cc-on.txt" 2>&1 ||
    die "callgrind_control -i on failed: $(tail -3 "$dir/cc-on.txt")"
  out=$dir/wrk.txt
  WRK_EXPECT=$expect bg_wait timeout $((DURATION + 60)) \
    wrk -t "$WRK_THREADS" -c "$CONNS" -d "${DURATION}s" --timeout 10s -s "$LUA" "http://$H:$P_LB/" >"$out" 2>&1 ||
    die "wrk failed: $(tail -3 "$out")"
  timeout 60 callgrind_control -i off "$lb_pid" >"$dir/cc-off.txt" 2>&1 ||
    die "callgrind_control -i off failed: $(tail -3 "$dir/cc-off.txt")"
  timeout 120 callgrind_control -d "$lb_pid" >"$dir/cc-dump.txt" 2>&1 ||
    die "callgrind_control -d failed: $(tail -3 "$dir/cc-dump.txt")"

  line=$(grep '^WRKRESULT ' "$out") || die "no result line from wrk: $(tail -3 "$out")"
  python3 - "$line" "$mode" <<'EOF' || die "wrk saw unexpected answers or socket errors: $line"
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
errs = sum(int(f[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout"))
sys.exit(1 if int(f["bad"]) or errs or int(f["requests"]) == 0 else 0)
EOF
  REQUESTS=$(sed -n 's/.* requests=\([0-9]*\) .*/\1/p' <<<"$line")

  # The dump written by -d: callgrind.out.1 (callgrind appends the dump's sequence number).
  local dump
  dump=$(ls "$dir"/callgrind.out.* 2>/dev/null | head -1)
  [[ -n $dump ]] || die "no callgrind dump in $dir (see $dir/cc-dump.txt)"
  # `totals:` (the sum of the cost lines) is the number: with --instr-atstart=no, valgrind 3.19
  # writes `summary: 0` at the top of a dump that callgrind_control -d triggered.
  IR=$(awk '/^totals:/ {print $2; exit}' "$dump")
  [[ $IR =~ ^[0-9]+$ ]] || die "no total Ir in $dump"

  kill -TERM "$lb_pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$lb_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$lb_pid" 2>/dev/null || true
  wait "$lb_pid" 2>/dev/null || true
}

for mode in proxy redirect; do
  per=()
  for ((r = 1; r <= ROUNDS; r++)); do
    measure "$mode" "$r"
    n=$(((IR + REQUESTS / 2) / REQUESTS))
    per+=("$n")
    printf '%s run %d: %d instructions per request (%d Ir / %d requests)\n' "$mode" "$r" "$n" "$IR" "$REQUESTS"
  done
  median=$(printf '%s\n' "${per[@]}" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}')
  echo "$mode: $median instructions per request (median of $ROUNDS: ${per[*]})"
done
