#!/usr/bin/env bash
# What active health checks cost: lb checking N backends (default 10,000) every second.
#
# One sample-web, bound to 0.0.0.0, answers for every 127.0.x.y address, so N distinct backends
# (127.0.x.y:PORT) need one process. Adds them through the admin API (each add runs one check and
# one fsync), then reads lb's CPU time from /proc over a measuring window.
#
#   bash bench/health_checks.sh                # N=10000 INTERVAL=1s WINDOW=20
#   N=1000 WINDOW=10 bash bench/health_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-10000}
INTERVAL_MS=${INTERVAL_MS:-1000}
WINDOW=${WINDOW:-20}

cargo build --release -q -p lb -p sample-web
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
web_port=$(free_port); data_port=$(free_port); admin_port=$(free_port)

./target/release/sample-web --bind 0.0.0.0 --port "$web_port" --node hc >"$work/web.log" 2>&1 &
pids+=($!); web_pid=$!
./target/release/lb --listen "127.0.0.1:$data_port" --admin "127.0.0.1:$admin_port" --threads 1 \
  --data-dir "$work/data" >"$work/lb.log" 2>&1 &
pids+=($!); lb_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$admin_port/healthz" >/dev/null && break; sleep 0.1; done

curl -sf "http://127.0.0.1:$admin_port/v1/pools" -H 'Content-Type: application/json' \
  -d "{\"pattern\": \"/\", \"health_check\": {\"interval_ms\": $INTERVAL_MS, \"evict_after\": 0}}" >/dev/null

echo "adding $N backends (one check and one fsync each)..."
start=$(date +%s.%N)
python3 - "$admin_port" "$web_port" "$N" <<'PY'
import http.client, json, sys
from concurrent.futures import ThreadPoolExecutor
admin, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def add(i):
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)
    body = json.dumps({"ip": f"127.0.{i // 250}.{i % 250 + 1}", "port": port})
    c.request("POST", "/v1/pool/backends?pattern=/", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 201, (r.status, i)
with ThreadPoolExecutor(32) as pool:
    list(pool.map(add, range(n)))
PY
added=$(date +%s.%N)
printf 'added in %.1f s\n' "$(echo "$added - $start" | bc)"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
sleep 3  # let the first round of checks (spread over the first second) settle
lb0=$(ticks "$lb_pid"); web0=$(ticks "$web_pid"); t0=$(date +%s.%N)
sleep "$WINDOW"
lb1=$(ticks "$lb_pid"); web1=$(ticks "$web_pid"); t1=$(date +%s.%N)
checks=$(echo "$N * 1000 / $INTERVAL_MS" | bc)
python3 - "$lb0" "$lb1" "$web0" "$web1" "$t0" "$t1" "$hz" "$N" "$checks" "$lb_pid" <<'PY'
import sys
lb0, lb1, web0, web1, t0, t1, hz, n, checks, pid = sys.argv[1:]
secs = float(t1) - float(t0)
lb = (int(lb1) - int(lb0)) / int(hz) / secs
web = (int(web1) - int(web0)) / int(hz) / secs
rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
print(f"backends: {n}, checks/s: {checks}")
print(f"lb CPU: {lb * 100:.1f}% of one core ({lb * 1e6 / int(checks):.1f} us of CPU per check)")
print(f"sample-web CPU (answering the checks): {web * 100:.1f}% of one core")
print(f"lb RSS: {rss / 1024:.1f} MiB")
PY
sick=$(curl -sf "http://127.0.0.1:$admin_port/v1/pool/health?pattern=/" | python3 -c \
  'import json,sys; print(sum(b["status"] != "BS_HEALTHY" for b in json.load(sys.stdin)["backends"]))')
echo "backends not healthy at the end: $sick"
