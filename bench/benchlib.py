#!/usr/bin/env python3
"""Helpers for bench/compare.sh (standard library only; loopback only).

  benchlib.py ports N                          N distinct free TCP ports on 127.0.0.1
  benchlib.py idle PID PORT N                  RSS of PID while N keep-alive clients sit idle on PORT
  benchlib.py admin-latency ADMIN DATA PATTERN BACKEND_PORT TRIES
                                               time for an added backend to be live on the data port
  benchlib.py cpu PID PID                      CPU time used so far (us) by each PID's process tree
                                               (0: none), then by the whole machine
  benchlib.py progress NAME ROUND WRKRESULT    one progress line for a wrk run
  benchlib.py summarize RESULTS_TSV            the tables and ratios from the wrk runs
"""

import http.client
import json
import os
import select
import socket
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"  # the benchmark never talks to any other address


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((HOST, 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def kib(value):  # "12345 kB" -> 12345
    return int(value.split()[0])


def idle(pid, port, n, timeout=60.0):
    """Opens n client connections, one keep-alive GET / on each, holds them, reads lb's RSS."""
    deadline = time.monotonic() + timeout
    before = proc_status(pid)
    conns, failed = [], 0
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        c = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            c.request("GET", "/", headers={"Connection": "keep-alive"})
            r = c.getresponse()
            r.read()
            if r.status != 200 or r.will_close:
                failed += 1
            conns.append(c)
        except OSError:
            failed += 1
            c.close()
    time.sleep(0.5)  # let lb settle with all of them idle
    during = proc_status(pid)
    # How many are still open (lb has not closed them under us)?
    still_open = 0
    for c in conns:
        s = c.sock
        if s is None:
            continue
        readable, _, _ = select.select([s], [], [], 0)
        if not readable:
            still_open += 1
        else:
            try:
                if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b"":
                    still_open += 1
            except OSError:
                pass
    for c in conns:
        c.close()
    print(json.dumps({
        "rss_before_kib": kib(before["VmRSS"]),
        "rss_during_kib": kib(during["VmRSS"]),
        "hwm_during_kib": kib(during["VmHWM"]),
        "threads": int(during.get("Threads", "0")),
        "opened": len(conns),
        "failed": failed,
        "still_open": still_open,
    }))


def admin_request(admin_port, method, path, body=None):
    c = http.client.HTTPConnection(HOST, admin_port, timeout=30)
    try:
        c.request(method, path, body=None if body is None else json.dumps(body),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def admin_latency(admin_port, data_port, pattern, backend_port, tries, timeout=10.0):
    """Per try: the pool PATTERN is empty (503); POST the backend; a poller thread that was
    already hammering the data port notes when the first 200 comes back. Reports the time from
    just before the POST to that first 200 ('live'), and to the POST's own answer ('ack')."""
    q = "pattern=" + pattern
    path = pattern + "x"
    acks, lives = [], []
    for attempt in range(tries):
        admin_request(admin_port, "DELETE", f"/v1/pool/backends?{q}&ip={HOST}&port={backend_port}")
        c = http.client.HTTPConnection(HOST, data_port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        if r.status != 503:
            raise SystemExit(f"admin-latency: {path} answered {r.status} with the pool empty, expected 503")

        result = {}
        started = threading.Event()

        def poll():
            conn = None
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(HOST, data_port, timeout=5)
                    conn.request("GET", path)
                    resp = conn.getresponse()
                    resp.read()
                    started.set()
                    if resp.status == 200:
                        result["live"] = time.perf_counter()
                        break
                    if resp.will_close:
                        conn.close()
                        conn = None
                except OSError:
                    if conn is not None:
                        conn.close()
                    conn = None
            started.set()
            if conn is not None:
                conn.close()

        t = threading.Thread(target=poll)
        t.start()
        started.wait(5)
        t0 = time.perf_counter()
        status, body = admin_request(admin_port, "POST", f"/v1/pool/backends?{q}",
                                     {"ip": HOST, "port": backend_port, "url_path": "/"})
        t_ack = time.perf_counter()
        t.join()
        if status != 201:
            raise SystemExit(f"admin-latency: adding the backend answered {status}: {body[:200]!r}")
        if "live" not in result:
            raise SystemExit(f"admin-latency: no request routed to the new backend within {timeout}s")
        acks.append((t_ack - t0) * 1000)
        lives.append((result["live"] - t0) * 1000)
    print(json.dumps({"tries": tries, "ack_ms": acks, "live_ms": lives}))


# ---- CPU accounting ----


def cpu(pids):
    """Microseconds of CPU (user + system) used so far by each pid with all its descendants, then by
    the whole machine (all CPUs, every state but idle and iowait). Threads are part of their
    process's counters; descendants are found through their parent pid."""
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        used[pid] = int(fields[11]) + int(fields[12])  # utime, stime

    def tree(root):
        total, stack = 0, [root]
        while stack:
            pid = stack.pop()
            total += used.get(pid, 0)
            stack.extend(child for child, p in parent.items() if p == pid)
        return total

    out = [round(tree(pid) * tick_us) if pid > 0 else 0 for pid in pids]
    with open("/proc/stat") as f:
        times = [int(x) for x in f.readline().split()[1:]]
    busy = sum(times[:8]) - times[3] - times[4]  # user nice system idle iowait irq softirq steal
    out.append(round(busy * tick_us))
    print(" ".join(str(x) for x in out))


# ---- summary ----

PROXY = ["backend-direct", "nginx-proxy", "haproxy", "lb-proxy"]
REDIRECT = ["nginx-307", "lb-redirect"]


def parse_results(path):
    runs = {}
    with open(path) as f:
        for line in f:
            name, rnd, rest = line.rstrip("\n").split("\t", 2)
            fields = dict(kv.split("=", 1) for kv in rest.split()[1:])
            r = {k: int(v) for k, v in fields.items()}
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["socket_errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
            runs.setdefault(name, []).append(r)
    return runs


def summarize(path):
    runs = parse_results(path)
    # LB_VARIANTS contenders (compare.sh), in the order they ran first.
    variants = [n for n in runs if n.startswith("lb-proxy-")]
    proxy = PROXY + variants
    med = {}
    for name, rs in runs.items():
        med[name] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50": statistics.median(r["p50_us"] for r in rs) / 1000,
            "p99": statistics.median(r["p99_us"] for r in rs) / 1000,
            "bad": sum(r["bad"] for r in rs),
            "good": sum(r["good"] for r in rs),
            "sockerr": sum(r["socket_errors"] for r in rs),
            "first_bad": next((r["first_bad"] for r in rs if r["first_bad"]), 0),
            "each": [r["rps"] for r in rs],
        }
        if all("cpu_all_us" in r for r in rs):
            per = lambda key: statistics.median(r[key] / max(r["requests"], 1) for r in rs)
            med[name]["cpu"] = {
                "own": per("cpu_contender_us"),
                "backend": per("cpu_backend_us"),
                "rest": statistics.median(
                    (r["cpu_all_us"] - r["cpu_contender_us"] - r["cpu_backend_us"]) / max(r["requests"], 1) for r in rs
                ),
                "all": per("cpu_all_us"),
            }

    def table(title, names, expect):
        names = [n for n in names if n in med]
        if not names:
            return
        print(f"\n{title}")
        head = f"  {'contender':<16}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'not ' + expect:>10}{'sock err':>10}   req/s per round"
        print(head)
        print("  " + "-" * (len(head) - 2))
        for n in names:
            m = med[n]
            bad = f"{m['bad']}" + (f" ({m['first_bad']})" if m["first_bad"] else "")
            each = " ".join(f"{x:.0f}" for x in m["each"])
            print(f"  {n:<16}{m['rps']:>10.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}{bad:>10}{m['sockerr']:>10}   {each}")

    table("Proxy (GET /, 200 expected)", proxy, "2xx")
    table("Redirect (GET /, 307 expected)", REDIRECT, "307")

    def ratio(a, b):
        if a not in med or b not in med:
            return
        x, y = med[a], med[b]
        print(f"  {a + ' / ' + b:<28} req/s {x['rps'] / y['rps']:6.2f}x   p99 {x['p99'] / y['p99']:6.2f}x"
              f"   p50 {x['p50'] / y['p50']:6.2f}x")

    print("\nRatios (req/s: higher is better for lb; p50/p99: lower is better for lb)")
    ratio("lb-proxy", "nginx-proxy")
    ratio("lb-proxy", "haproxy")
    ratio("lb-redirect", "nginx-307")
    ratio("lb-proxy", "backend-direct")
    for v in variants:
        ratio(v, "lb-proxy")

    costs = [n for n in proxy + REDIRECT if "cpu" in med.get(n, {})]
    if costs:
        print("\nCPU per request, microseconds (median of rounds; from /proc, user + system)")
        head = f"  {'contender':<16}{'itself':>9}{'backends':>10}{'wrk+rest':>10}{'machine':>9}"
        print(head)
        print("  " + "-" * (len(head) - 2))
        for n in costs:
            c = med[n]["cpu"]
            own = "-" if n == "backend-direct" else f"{c['own']:.2f}"
            print(f"  {n:<16}{own:>9}{c['backend']:>10.2f}{c['rest']:>10.2f}{c['all']:>9.2f}")
        print("  (itself: the contender's processes; wrk+rest: everything else on the machine, mostly wrk."
              " When wrk shares\n   the CPUs, req/s is about CPUs / machine, so the contender's own column is"
              " what a faster proxy can shrink.)")

        def cpu_ratio(a, b):
            if "cpu" in med.get(a, {}) and "cpu" in med.get(b, {}):
                print(f"  {a + ' / ' + b:<28} CPU per request {med[a]['cpu']['own'] / med[b]['cpu']['own']:6.2f}x"
                      "   (lower is better for lb)")

        cpu_ratio("lb-proxy", "nginx-proxy")
        cpu_ratio("lb-proxy", "haproxy")
        cpu_ratio("lb-redirect", "nginx-307")
        for v in variants:
            cpu_ratio(v, "lb-proxy")
    total_bad = sum(m["bad"] + m["sockerr"] for m in med.values())
    print(f"\nUnexpected statuses + socket errors over all runs: {total_bad}")


def progress(name, rnd, line):
    f = {k: int(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
    rps = f["requests"] / (f["duration_us"] / 1e6)
    own = f"   CPU {f['cpu_contender_us'] / max(f['requests'], 1):5.2f} us/req" if "cpu_contender_us" in f else ""
    print(f"#   round {rnd}  {name:<15}{rps:>9.0f} req/s   p50 {f['p50_us'] / 1000:6.2f} ms"
          f"   p99 {f['p99_us'] / 1000:6.2f} ms   bad {f['bad']}{own}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "ports":
        ports(int(argv[2]))
    elif cmd == "idle":
        idle(int(argv[2]), int(argv[3]), int(argv[4]))
    elif cmd == "admin-latency":
        admin_latency(int(argv[2]), int(argv[3]), argv[4], int(argv[5]), int(argv[6]))
    elif cmd == "cpu":
        cpu([int(p) for p in argv[2:]])
    elif cmd == "progress":
        progress(argv[2], argv[3], argv[4])
    elif cmd == "summarize":
        summarize(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
