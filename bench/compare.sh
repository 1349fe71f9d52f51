#!/usr/bin/env bash
# lb against nginx and HAProxy on one machine, in one run, loopback only.
# See bench/README.md. Knobs (env): THREADS CONNS WRK_THREADS DURATION ROUNDS WARMUP
# IDLE_CONNS ADMIN_TRIES LB_STRATEGY WRK_COUNT LB_BIN LB_VARIANTS KEEP_TMP.
set -euo pipefail

THREADS=${THREADS:-1}          # nginx worker_processes, haproxy nbthread, lb --threads (backends too)
CONNS=${CONNS:-64}             # wrk connections
WRK_THREADS=${WRK_THREADS:-2}  # wrk threads
DURATION=${DURATION:-10}       # seconds per wrk run
ROUNDS=${ROUNDS:-3}            # rounds; every contender runs once per round
WARMUP=${WARMUP:-2}            # seconds of unrecorded load per contender before round 1
IDLE_CONNS=${IDLE_CONNS:-1000} # idle keep-alive clients held open for the peak RSS
ADMIN_TRIES=${ADMIN_TRIES:-5}  # tries for the admin-change latency
LB_STRATEGY=${LB_STRATEGY:-round_robin}  # lb's pool strategy (round_robin like nginx and haproxy, or p2c)
WRK_COUNT=${WRK_COUNT:-exact}  # exact: a wrk Lua hook checks every status; wrk: wrk's own count (>= 400 only), cheaper

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
LB_BIN=${LB_BIN:-$ROOT/target/release/lb}
# More lb contenders, proxy mode only, each its own process: 'NAME=BINARY [FLAGS...]', separated
# by ';' (e.g. 'before=/tmp/old/lb;logs=target/release/lb --access-log /dev/null').
LB_VARIANTS=${LB_VARIANTS:-}
LUA=$BENCH/wrk-report.lua
LIB=$BENCH/benchlib.py
H=127.0.0.1 # everything listens and is loaded on loopback only

for v in THREADS CONNS WRK_THREADS DURATION ROUNDS WARMUP IDLE_CONNS ADMIN_TRIES; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "compare.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((THREADS >= 1 && CONNS >= 1 && WRK_THREADS >= 1 && DURATION >= 1 && ROUNDS >= 1 && ADMIN_TRIES >= 1)) ||
  { echo "compare.sh: THREADS, CONNS, WRK_THREADS, DURATION, ROUNDS and ADMIN_TRIES must be >= 1" >&2; exit 2; }
[[ $WRK_COUNT == exact || $WRK_COUNT == wrk ]] || { echo "compare.sh: WRK_COUNT must be exact or wrk" >&2; exit 2; }
((WRK_THREADS <= CONNS)) || { echo "compare.sh: WRK_THREADS must be <= CONNS" >&2; exit 2; }

# ---- what we need (this script installs nothing) ----
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  echo "compare.sh: missing: ${missing[*]}" >&2
  echo "  install with: sudo apt-get install -y ${missing[*]}" >&2
  exit 2
fi
VARIANTS=() # names; VBIN / VFLAGS by name
declare -A VBIN=() VFLAGS=()
IFS=';' read -r -a specs <<<"$LB_VARIANTS"
for spec in "${specs[@]}"; do
  [[ -z ${spec// /} ]] && continue
  [[ $spec =~ ^[[:space:]]*([a-z0-9_-]+)=([^[:space:]]+)[[:space:]]*(.*)$ ]] ||
    { echo "compare.sh: LB_VARIANTS: '$spec' is not NAME=BINARY [FLAGS...] (NAME: a-z 0-9 _ -)" >&2; exit 2; }
  name=${BASH_REMATCH[1]}
  [[ -z ${VBIN[$name]:-} ]] || { echo "compare.sh: LB_VARIANTS: '$name' is given twice" >&2; exit 2; }
  [[ -x ${BASH_REMATCH[2]} ]] || { echo "compare.sh: LB_VARIANTS: no lb binary at ${BASH_REMATCH[2]}" >&2; exit 2; }
  VARIANTS+=("$name")
  VBIN[$name]=${BASH_REMATCH[2]}
  VFLAGS[$name]=${BASH_REMATCH[3]}
done
if [[ ! -x $LB_BIN ]]; then
  echo "compare.sh: no lb binary at $LB_BIN: run 'cargo build --release --workspace' (or set LB_BIN)" >&2
  exit 2
fi
PATH=$PATH:/usr/sbin
NGINX=$(command -v nginx)
HAPROXY=$(command -v haproxy)

# ---- temp dir, cleanup, output file ----
TMP=$(mktemp -d -t lb-bench.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "# temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$BENCH/results"
OUT=$BENCH/results/compare-$(date +%Y%m%d-%H%M%S).txt
exec > >(tee "$OUT") 2>&1

log() { echo "# $*"; }
die() { echo "compare.sh: error: $*" >&2; exit 1; }

# Raise the open-file limit for lb and the idle clients (1,000 sockets each side).
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]] || ((hard >= 65536)); then ulimit -n 65536 2>/dev/null || true; else ulimit -n "$hard" 2>/dev/null || true; fi
(($(ulimit -n) > IDLE_CONNS + 256)) || die "open-file limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS"

# Run lb from a copy, so that a rebuild during the run cannot swap it.
cp "$LB_BIN" "$TMP/lb"

read -r -a ports < <(python3 "$LIB" ports $((8 + 2 * ${#VARIANTS[@]})))
read -r P_A P_B P_C P_NGX P_NGX307 P_HAP P_LB P_ADMIN <<<"${ports[*]:0:8}"
declare -A VPORT=() VADMIN=() VPID=()
i=8
for name in "${VARIANTS[@]}"; do
  cp "${VBIN[$name]}" "$TMP/lb-$name"
  VPORT[$name]=${ports[i]}
  VADMIN[$name]=${ports[i + 1]}
  i=$((i + 2))
done

echo "lb benchmark: lb vs nginx vs HAProxy, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "lb build:   $(git -C "$ROOT" log -1 --oneline 2>/dev/null || echo '?')" \
  "($(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l) files modified in the work tree)"
echo "lb binary:  $LB_BIN, built $(date -u -r "$LB_BIN" '+%Y-%m-%d %H:%M:%S UTC'), sha256 $(sha256sum "$LB_BIN" | cut -c1-12)"
echo "tools:      $("$NGINX" -v 2>&1 | sed 's/.*: //'), $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "machine:    $(nproc) CPUs, $(uname -sr), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings:   THREADS=$THREADS CONNS=$CONNS WRK_THREADS=$WRK_THREADS DURATION=${DURATION}s ROUNDS=$ROUNDS" \
  "WARMUP=${WARMUP}s IDLE_CONNS=$IDLE_CONNS ADMIN_TRIES=$ADMIN_TRIES LB_STRATEGY=$LB_STRATEGY WRK_COUNT=$WRK_COUNT"
for name in "${VARIANTS[@]}"; do
  echo "variant:    lb-proxy-$name: ${VBIN[$name]} ${VFLAGS[$name]} (sha256 $(sha256sum "${VBIN[$name]}" | cut -c1-12)), port ${VPORT[$name]}"
done
echo "ports:      backends $P_A $P_B (+$P_C for the admin test), nginx $P_NGX (307: $P_NGX307), haproxy $P_HAP, lb $P_LB (admin $P_ADMIN)"
echo

# ---- configs ----
# nginx runs as the current user; as root the workers would drop to 'nobody', so keep them root.
USER_LINE=""
if [[ $(id -u) == 0 ]]; then USER_LINE="user root;"; fi

nginx_conf() { # $1 = prefix dir, $2 = http{} body
  mkdir -p "$1/logs"
  cat >"$1/nginx.conf" <<EOF
$USER_LINE
worker_processes $THREADS;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $1/client_body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
  default_type text/plain;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
$2
}
EOF
}

start_nginx() { # $1 = prefix dir, $2 = log name
  "$NGINX" -p "$1" -c "$1/nginx.conf" -e "$1/logs/error.log" >"$TMP/$2.out" 2>&1 &
  PIDS+=($!)
}

# Backends: one nginx serving three identical ports (A and B for the pool, C for the admin test).
nginx_conf "$TMP/backend" "
  server {
    listen $H:$P_A;
    listen $H:$P_B;
    listen $H:$P_C;
    location / { return 200 'hello from nginx\n'; }
    location = /healthz { return 200 'ok'; }
  }"

nginx_conf "$TMP/nginx" "
  upstream backends {
    server $H:$P_A;
    server $H:$P_B;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen $H:$P_NGX;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
  server {
    listen $H:$P_NGX307;
    location / { return 307 http://$H:$P_A\$request_uri; }
  }"

cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend fe
  bind $H:$P_HAP
  default_backend be
backend be
  balance roundrobin
  server a $H:$P_A
  server b $H:$P_B
EOF

# ---- start everything ----
wait_code() { # $1 url, $2 expected status, $3 what
  local code
  for _ in $(seq 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" || true)
    [[ $code == "$2" ]] && return 0
    sleep 0.1
  done
  die "$3: $1 answered '$code', expected $2 (logs in $TMP, rerun with KEEP_TMP=1 to keep them)"
}

start_nginx "$TMP/backend" backend
BACKEND_PID=$!
start_nginx "$TMP/nginx" nginx
NGINX_PID=$!
"$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.out" 2>&1 &
HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)
LB_LOG=warn "$TMP/lb" --listen "$H:$P_LB" --admin "$H:$P_ADMIN" --data-dir "$TMP/lb-data" \
  --threads "$THREADS" >"$TMP/lb.out" 2>&1 &
LB_PID=$!
PIDS+=($LB_PID)
for name in "${VARIANTS[@]}"; do
  # shellcheck disable=SC2086 # the flags are words on purpose
  LB_LOG=warn "$TMP/lb-$name" --listen "$H:${VPORT[$name]}" --admin "$H:${VADMIN[$name]}" \
    --data-dir "$TMP/lb-data-$name" --threads "$THREADS" ${VFLAGS[$name]} >"$TMP/lb-$name.out" 2>&1 &
  VPID[$name]=$!
  PIDS+=($!)
done

wait_code "http://$H:$P_A/" 200 "backend A"
wait_code "http://$H:$P_B/healthz" 200 "backend B"
wait_code "http://$H:$P_NGX/" 200 "nginx proxy"
wait_code "http://$H:$P_NGX307/" 307 "nginx 307"
wait_code "http://$H:$P_HAP/" 200 "haproxy"
wait_code "http://$H:$P_ADMIN/healthz" 200 "lb admin"

ADMIN=http://$H:$P_ADMIN
api() { # $1 method, $2 path, $3 body, $4 expected status
  local code
  code=$(curl -s -o "$TMP/api.out" -w '%{http_code}' --max-time 30 -X "$1" "$ADMIN$2" \
    -H 'Content-Type: application/json' ${3:+-d "$3"})
  [[ $code == "$4" ]] || die "lb admin $1 $2 answered $code, expected $4: $(head -c 300 "$TMP/api.out")"
}
api POST /v1/pools "{\"pattern\": \"/\", \"mode\": \"proxy\", \"strategy\": \"$LB_STRATEGY\"}" 201
api POST "/v1/pool/backends?pattern=/" "{\"ip\": \"$H\", \"port\": $P_A, \"url_path\": \"/\"}" 201
api POST "/v1/pool/backends?pattern=/" "{\"ip\": \"$H\", \"port\": $P_B, \"url_path\": \"/\"}" 201
api POST /v1/pools '{"pattern": "/adminlat/", "mode": "proxy"}' 201
for name in "${VARIANTS[@]}"; do
  wait_code "http://$H:${VADMIN[$name]}/healthz" 200 "lb $name admin"
  ADMIN=http://$H:${VADMIN[$name]}
  api POST /v1/pools "{\"pattern\": \"/\", \"mode\": \"proxy\", \"strategy\": \"$LB_STRATEGY\"}" 201
  api POST "/v1/pool/backends?pattern=/" "{\"ip\": \"$H\", \"port\": $P_A, \"url_path\": \"/\"}" 201
  api POST "/v1/pool/backends?pattern=/" "{\"ip\": \"$H\", \"port\": $P_B, \"url_path\": \"/\"}" 201
  wait_code "http://$H:${VPORT[$name]}/" 200 "lb $name proxy"
done
ADMIN=http://$H:$P_ADMIN
wait_code "http://$H:$P_LB/" 200 "lb proxy"
log "all servers up"

# ---- lb memory: idle, then with IDLE_CONNS idle keep-alive clients ----
sleep 1
mem=$(python3 "$LIB" idle "$LB_PID" "$P_LB" "$IDLE_CONNS") || die "idle-connection test failed"
kill -0 "$LB_PID" 2>/dev/null || die "lb died during the idle-connection test (see $TMP/lb.out)"
read -r idle_kib held_kib hwm_kib opened failed still_open < <(python3 -c '
import json, sys
m = json.loads(sys.argv[1])
print(m["rss_before_kib"], m["rss_during_kib"], m["hwm_during_kib"], m["opened"], m["failed"], m["still_open"])' "$mem")

# ---- admin change -> live for routing ----
adm=$(python3 "$LIB" admin-latency "$P_ADMIN" "$P_LB" /adminlat/ "$P_C" "$ADMIN_TRIES") || die "admin-latency test failed"

# ---- load ----
NAMES=(backend-direct nginx-proxy haproxy lb-proxy nginx-307 lb-redirect)
declare -A URL=(
  [backend-direct]=http://$H:$P_A/ [nginx-proxy]=http://$H:$P_NGX/ [haproxy]=http://$H:$P_HAP/
  [lb-proxy]=http://$H:$P_LB/ [nginx-307]=http://$H:$P_NGX307/ [lb-redirect]=http://$H:$P_LB/
)
declare -A EXPECT=([nginx-307]=307 [lb-redirect]=307)
# Whose CPU is each contender's own (a process and its children; 0: the backends alone).
declare -A OWN_PID=(
  [backend-direct]=0 [nginx-proxy]=$NGINX_PID [haproxy]=$HAPROXY_PID
  [lb-proxy]=$LB_PID [nginx-307]=$NGINX_PID [lb-redirect]=$LB_PID
)
for name in "${VARIANTS[@]}"; do
  NAMES+=("lb-proxy-$name")
  URL[lb-proxy-$name]=http://$H:${VPORT[$name]}/
  OWN_PID[lb-proxy-$name]=${VPID[$name]}
done
LB_MODE=proxy

prepare() { # put lb's pool `/` in the mode the contender needs
  local want=
  case $1 in lb-proxy) want=proxy ;; lb-redirect) want=redirect ;; *) return 0 ;; esac
  if [[ $LB_MODE != "$want" ]]; then
    api PATCH "/v1/pool?pattern=/" "{\"mode\": \"$want\"}" 200
    LB_MODE=$want
  fi
  if [[ $want == redirect ]]; then wait_code "http://$H:$P_LB/" 307 "lb redirect"; else wait_code "http://$H:$P_LB/" 200 "lb proxy"; fi
}

RESULTS=$TMP/results.tsv
: >"$RESULTS"
run_wrk() { # $1 contender, $2 seconds, $3 round (0 = warm-up, not recorded)
  local name=$1 out=$TMP/wrk-$1-$3.txt line before after
  prepare "$name"
  read -r -a before < <(python3 "$LIB" cpu "${OWN_PID[$name]}" "$BACKEND_PID")
  WRK_EXPECT=${EXPECT[$name]:-2xx} WRK_COUNT=$WRK_COUNT timeout $(($2 + 30)) \
    wrk -t "$WRK_THREADS" -c "$CONNS" -d "${2}s" --timeout 5s -s "$LUA" "${URL[$name]}" >"$out" 2>&1 ||
    die "wrk against $name failed: $(tail -3 "$out")"
  line=$(grep '^WRKRESULT ' "$out") || die "no result line from wrk against $name: $(tail -3 "$out")"
  read -r -a after < <(python3 "$LIB" cpu "${OWN_PID[$name]}" "$BACKEND_PID")
  line+=" cpu_contender_us=$((after[0] - before[0])) cpu_backend_us=$((after[1] - before[1]))"
  line+=" cpu_all_us=$((after[2] - before[2]))"
  if (($3 > 0)); then
    printf '%s\t%s\t%s\n' "$name" "$3" "$line" >>"$RESULTS"
    python3 "$LIB" progress "$name" "$3" "$line"
  fi
}

if ((WARMUP > 0)); then
  log "warm-up: ${WARMUP}s per contender"
  for n in "${NAMES[@]}"; do run_wrk "$n" "$WARMUP" 0; done
fi
for ((r = 1; r <= ROUNDS; r++)); do
  # Rotate the order every round, so no contender always runs first or right after another.
  order=()
  for ((i = 0; i < ${#NAMES[@]}; i++)); do order+=("${NAMES[(i + r - 1) % ${#NAMES[@]}]}"); done
  log "round $r/$ROUNDS: ${order[*]} (load average $(cut -d' ' -f1 /proc/loadavg))"
  for n in "${order[@]}"; do
    run_wrk "$n" "$DURATION" "$r"
    sleep 1
  done
done
lb_status=$(cat /proc/"$LB_PID"/status)
kill -0 "$LB_PID" 2>/dev/null || die "lb died during the load runs (see $TMP/lb.out)"
for name in "${VARIANTS[@]}"; do
  kill -0 "${VPID[$name]}" 2>/dev/null || die "lb $name died during the load runs (see $TMP/lb-$name.out)"
done

# ---- report ----
echo
echo "==== results: median of $ROUNDS round(s) of ${DURATION}s, wrk -t$WRK_THREADS -c$CONNS, THREADS=$THREADS ===="
python3 "$LIB" summarize "$RESULTS"
if [[ $WRK_COUNT == wrk ]]; then echo "(WRK_COUNT=wrk: only statuses >= 400 were counted as unexpected)"; fi
echo
echo "lb memory (VmRSS / VmHWM from /proc/PID/status)"
python3 - "$idle_kib" "$held_kib" "$hwm_kib" "$opened" "$failed" "$still_open" "$IDLE_CONNS" "$lb_status" <<'EOF'
import sys
idle, held, hwm, opened, failed, still, want = map(int, sys.argv[1:8])
status = dict(l.split(":", 1) for l in sys.argv[8].splitlines() if ":" in l)
mib = lambda k: k / 1024
print(f"  idle, after start + pool setup:          RSS {mib(idle):7.1f} MiB")
print(f"  holding {opened} idle keep-alive clients:   RSS {mib(held):7.1f} MiB, peak (VmHWM) {mib(hwm):7.1f} MiB"
      f"   ({still} still open when read, {failed} failed, {want} wanted)")
print(f"  after all load runs:                     RSS {mib(int(status['VmRSS'].split()[0])):7.1f} MiB,"
      f" peak (VmHWM) {mib(int(status['VmHWM'].split()[0])):7.1f} MiB")
EOF
echo
python3 - "$adm" <<'EOF'
import json, statistics, sys
a = json.loads(sys.argv[1])
fmt = lambda xs: " ".join(f"{x:.1f}" for x in xs)
print("admin change -> live (POST a backend to an empty pool, a poller already hammering the data port)")
print(f"  until the first request is routed to it: median {statistics.median(a['live_ms']):6.1f} ms   (tries: {fmt(a['live_ms'])})")
print(f"  until the API answered 201:             median {statistics.median(a['ack_ms']):6.1f} ms   (tries: {fmt(a['ack_ms'])})")
print("  both include the health check lb runs on every add (GET /healthz on the new backend)")
EOF
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "saved to ${OUT#"$ROOT"/}"
