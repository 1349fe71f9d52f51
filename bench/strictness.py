#!/usr/bin/env python3
"""lb, nginx and HAProxy side by side on hostile HTTP/1.1 inputs (standard library only).

Starts, on 127.0.0.1 only, a recording backend (one listener per proxy, so what each proxy
forwarded is told apart), nginx and HAProxy as reverse proxies in front of it, and lb with a
pool `/` in proxy mode (added through the admin API). Every case sends the same raw bytes to
each proxy on a fresh connection and records the first status (or `close` / `timeout`), the
number of responses, and what the backend received for that case.

A proxy *rejects* a case when its answer is a 4xx/5xx or a close without any response, and
the backend received nothing. The verdict is `LAXER` when nginx or HAProxy rejects and lb
does not, `ok` otherwise; `fwd≠` marks cases where the backend saw something different via lb
than via both others. See bench/README.md.

  strictness.py [--lb-bin PATH] [--check] [--only ID,ID] [--timeout S] [--out FILE] [--keep-tmp]
"""

import argparse
import atexit
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"  # everything listens and connects on loopback only
BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
PROXIES = ("nginx", "haproxy", "lb")
TITLES = {"nginx": "nginx", "haproxy": "HAProxy", "lb": "lb"}


# ---------------------------------------------------------------------------------------------
# cases


def raw(*lines, body=b""):
    """A request from its head lines (str or bytes, joined with CRLF) and a body."""
    enc = [ln.encode("latin-1") if isinstance(ln, str) else ln for ln in lines]
    return b"\r\n".join(enc) + b"\r\n\r\n" + body


HOSTH = "Host: example.test"


def smug(cid):
    return f"GET /smuggled/{cid} HTTP/1.1\r\nHost: example.test\r\n\r\n".encode()


def te_cl(cid, te_lines, cl_first=True):
    """TE.CL request: a chunked body whose one chunk is a whole GET /smuggled request, and a
    Content-Length covering only the chunk-size line. Chunked: one request whose body is the
    GET's text. Content-Length: a POST with 4 body bytes, then GET /smuggled as a second
    request (then a stray `0` line)."""
    s = smug(cid)
    size_line = f"{len(s):x}\r\n".encode()
    body = size_line + s + b"\r\n0\r\n\r\n"
    cl = f"Content-Length: {len(size_line)}"
    hdrs = [cl] + list(te_lines) if cl_first else list(te_lines) + [cl]
    return raw(f"POST /s/{cid} HTTP/1.1", HOSTH, *hdrs, body=body)


def cl_case(cid, *cl_lines, body=b"hello"):
    return raw(f"POST /s/{cid} HTTP/1.1", HOSTH, *cl_lines, body=body)


def chunked(cid, body, method="POST", extra=()):
    return raw(f"{method} /s/{cid} HTTP/1.1", HOSTH, *extra, "Transfer-Encoding: chunked", body=body)


def get(cid, *hdrs, line=None):
    return raw(line or f"GET /s/{cid} HTTP/1.1", *hdrs)


def build_cases():
    C = []

    def case(cid, group, desc, data):
        C.append({"id": cid, "group": group, "desc": desc, "raw": data})

    # baselines: all three must forward these (a sanity check of the setup)
    case("base-get", "baseline", "plain GET", get("base-get", HOSTH))
    case("base-post-cl", "baseline", "POST, Content-Length: 5", cl_case("base-post-cl", "Content-Length: 5"))
    case("base-post-chunked", "baseline", "POST, chunked body",
         chunked("base-post-chunked", b"5\r\nhello\r\n0\r\n\r\n"))

    # ---- framing: Transfer-Encoding with Content-Length (TE.CL bodies, see te_cl) ----
    T = "Transfer-Encoding: "
    case("cl-te", "framing", "CL then `TE: chunked`", te_cl("cl-te", [T + "chunked"]))
    case("te-cl", "framing", "`TE: chunked` then CL", te_cl("te-cl", [T + "chunked"], cl_first=False))
    for cid, val, desc in [
        ("te-lead-space", "  chunked", "TE `  chunked` (extra leading space) + CL"),
        ("te-trail-space", "chunked ", "TE `chunked ` (trailing space) + CL"),
        ("te-vtab", "\x0bchunked", "TE `\\x0bchunked` (vertical tab) + CL"),
        ("te-case", "Chunked", "TE `Chunked` + CL"),
        ("te-xchunked", "xchunked", "TE `xchunked` + CL"),
        ("te-chunked-identity", "chunked, identity", "TE `chunked, identity` + CL"),
        ("te-identity-chunked", "identity, chunked", "TE `identity, chunked` + CL"),
        ("te-gzip-chunked", "gzip, chunked", "TE `gzip, chunked` + CL"),
        ("te-chunked-chunked", "chunked, chunked", "TE `chunked, chunked` + CL"),
    ]:
        case(cid, "framing", desc, te_cl(cid, [T + val]))
    case("te-two-headers", "framing", "two TE headers `chunked` and `cow` + CL",
         te_cl("te-two-headers", [T + "chunked", T + "cow"]))
    case("te-space-colon", "framing", "`Transfer-Encoding : chunked` (space before colon) + CL",
         te_cl("te-space-colon", ["Transfer-Encoding : chunked"]))
    case("te-obs-fold", "framing", "TE value on an obs-fold line + CL",
         te_cl("te-obs-fold", ["Transfer-Encoding:\r\n chunked"]))
    case("te-no-cl-xchunked", "framing", "TE `xchunked` alone (no CL), chunked-looking body",
         raw("POST /s/te-no-cl-xchunked HTTP/1.1", HOSTH, T + "xchunked", body=b"5\r\nhello\r\n0\r\n\r\n"))
    # the same codings without CL: valid (coding names are case-insensitive, OWS is not part of
    # a field value); lb must not refuse what nginx and HAProxy accept here
    case("te-alone-case", "framing", "TE `Chunked` alone (no CL)",
         raw("POST /s/te-alone-case HTTP/1.1", HOSTH, T + "Chunked", body=b"5\r\nhello\r\n0\r\n\r\n"))
    case("te-alone-space", "framing", "TE `  chunked ` alone (no CL)",
         raw("POST /s/te-alone-space HTTP/1.1", HOSTH, T + "  chunked ", body=b"5\r\nhello\r\n0\r\n\r\n"))
    case("te-http10", "framing", "HTTP/1.0 request with `TE: chunked` + CL",
         te_cl("te-http10", [T + "chunked"]).replace(b"HTTP/1.1\r\nHost", b"HTTP/1.0\r\nHost", 1))

    # ---- framing: Content-Length ----
    s = smug("cl-dup-diff")
    case("cl-dup-equal", "framing", "two `Content-Length: 5`",
         cl_case("cl-dup-equal", "Content-Length: 5", "Content-Length: 5"))
    case("cl-dup-diff", "framing", "`Content-Length: 5` and `Content-Length: 5+len(GET)`",
         cl_case("cl-dup-diff", "Content-Length: 5", f"Content-Length: {5 + len(s)}", body=b"hello" + s))
    case("cl-list", "framing", "`Content-Length: 5, 5`", cl_case("cl-list", "Content-Length: 5, 5"))
    case("cl-plus", "framing", "`Content-Length: +5`", cl_case("cl-plus", "Content-Length: +5"))
    case("cl-neg", "framing", "`Content-Length: -1`", cl_case("cl-neg", "Content-Length: -1"))
    case("cl-space", "framing", "`Content-Length: 5 5`", cl_case("cl-space", "Content-Length: 5 5"))
    case("cl-hex", "framing", "`Content-Length: 0x5`", cl_case("cl-hex", "Content-Length: 0x5"))
    case("cl-huge", "framing", "`Content-Length: 99999999999999999999`",
         cl_case("cl-huge", "Content-Length: 99999999999999999999"))
    case("cl-get-body", "framing", "GET with `Content-Length: 5` body",
         raw("GET /s/cl-get-body HTTP/1.1", HOSTH, "Content-Length: 5", body=b"hello"))

    # ---- framing: header syntax ----
    case("obs-fold", "framing", "obs-fold continuation line in `X-Fold`",
         get("obs-fold", HOSTH, "X-Fold: a", " b"))
    case("hdr-space-colon", "framing", "`X-Test : a` (space before colon)", get("hdr-space-colon", HOSTH, "X-Test : a"))
    case("hdr-nul", "framing", "NUL inside a header value", get("hdr-nul", HOSTH, "X-Test: a\x00b"))
    case("hdr-cr", "framing", "bare CR inside a header value", get("hdr-cr", HOSTH, "X-Test: a\rb"))
    case("hdr-lf", "framing", "bare LF inside a header value (`X-Test: a\\nb`)", get("hdr-lf", HOSTH, "X-Test: a\nb"))
    case("hdr-bare-lf-eol", "framing", "every line ended by a bare LF",
         b"GET /s/hdr-bare-lf-eol HTTP/1.1\nHost: example.test\nX-Test: a\n\n")
    case("hdr-name-bad", "framing", "header name with a non-token char (`X@Y: a`)", get("hdr-name-bad", HOSTH, "X@Y: a"))
    case("hdr-no-colon", "framing", "header line without a colon", get("hdr-no-colon", HOSTH, "X-Test a"))

    # ---- framing: chunked bodies ----
    case("chunk-bad-size", "framing", "chunk size `zz`", chunked("chunk-bad-size", b"zz\r\nhello\r\n0\r\n\r\n"))
    case("chunk-overflow", "framing", "chunk size `ffffffffffffffffff` (72 bits)",
         chunked("chunk-overflow", b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"))
    case("chunk-bad-ext", "framing", "chunk extension `5;\\x01`", chunked("chunk-bad-ext", b"5;\x01\r\nhello\r\n0\r\n\r\n"))
    case("chunk-no-crlf", "framing", "no CRLF after chunk data (`hello0\\r\\n`)",
         chunked("chunk-no-crlf", b"5\r\nhello0\r\n\r\n"))
    case("chunk-lf-only", "framing", "chunk lines ended by bare LF", chunked("chunk-lf-only", b"5\nhello\n0\n\n"))
    case("chunk-size-ws", "framing", "chunk size `5 ` (trailing space)", chunked("chunk-size-ws", b"5 \r\nhello\r\n0\r\n\r\n"))
    case("chunk-then-request", "framing", "a GET right after the chunked terminator (pipelined: 2 requests expected)",
         chunked("chunk-then-request", b"0\r\n\r\n" + smug("chunk-then-request").replace(b"/smuggled/", b"/pipelined/")))
    case("chunk-trailer-request", "framing", "trailer section holding a request line after `0`",
         chunked("chunk-trailer-request", b"0\r\nGET /smuggled/chunk-trailer-request HTTP/1.1\r\n\r\n"))
    case("get-chunked", "framing", "GET with a chunked body (is it forwarded?)",
         chunked("get-chunked", b"5\r\nhello\r\n0\r\n\r\n", method="GET"))

    # ---- Host ----
    case("host-missing", "host", "HTTP/1.1 without Host", get("host-missing"))
    case("host-dup-equal", "host", "two equal Host headers", get("host-dup-equal", HOSTH, HOSTH))
    case("host-dup-diff", "host", "two different Host headers", get("host-dup-diff", HOSTH, "Host: other.test"))
    case("host-userinfo", "host", "`Host: a@b.example`", get("host-userinfo", "Host: a@b.example"))
    case("host-path", "host", "`Host: a/b`", get("host-path", "Host: a/b"))
    case("host-space", "host", "`Host: a b`", get("host-space", "Host: a b"))
    case("host-empty", "host", "empty Host", get("host-empty", "Host:"))
    case("host-comma", "host", "`Host: a.example, b.example`", get("host-comma", "Host: a.example, b.example"))
    case("host-bad-port", "host", "`Host: a.example:abc`", get("host-bad-port", "Host: a.example:abc"))
    case("abs-host-differs", "host", "`GET http://a.example/...` + `Host: b.example`",
         get("abs-host-differs", "Host: b.example", line="GET http://a.example/s/abs-host-differs HTTP/1.1"))
    case("abs-query-only", "host", "`GET http://a.example?x=1` (what path does the backend get?)",
         get("abs-query-only", "Host: a.example", line="GET http://a.example?x=1 HTTP/1.1"))
    case("abs-no-host", "host", "absolute-form, no Host header",
         get("abs-no-host", line="GET http://a.example/s/abs-no-host HTTP/1.1"))
    case("http10-no-host", "host", "HTTP/1.0 without Host (fine)", get("http10-no-host", line="GET /s/http10-no-host HTTP/1.0"))

    # ---- request line ----
    case("rl-extra-spaces", "request-line", "`GET  /s/x  HTTP/1.1` (double spaces)",
         get("x", HOSTH, line="GET  /s/rl-extra-spaces  HTTP/1.1"))
    case("rl-tabs", "request-line", "tab separators", get("x", HOSTH, line="GET\t/s/rl-tabs\tHTTP/1.1"))
    case("method-lower", "request-line", "method `get`", get("x", HOSTH, line="get /s/method-lower HTTP/1.1"))
    case("method-invalid", "request-line", "method `G(T`", get("x", HOSTH, line="G(T /s/method-invalid HTTP/1.1"))
    case("ver-1.2", "request-line", "`HTTP/1.2`", get("x", HOSTH, line="GET /s/ver-1.2 HTTP/1.2"))
    case("ver-2.0", "request-line", "`HTTP/2.0` on an HTTP/1 connection", get("x", HOSTH, line="GET /s/ver-2.0 HTTP/2.0"))
    case("ver-lower", "request-line", "`http/1.1`", get("x", HOSTH, line="GET /s/ver-lower http/1.1"))
    case("uri-64k", "request-line", "64 KiB request-target",
         get("x", HOSTH, line="GET /s/uri-64k/" + "a" * 65536 + " HTTP/1.1"))
    case("uri-no-slash", "request-line", "target `s/x` (no leading slash)", get("x", HOSTH, line="GET s/uri-no-slash HTTP/1.1"))
    case("uri-fragment", "request-line", "target with `#frag`", get("x", HOSTH, line="GET /s/uri-fragment#frag HTTP/1.1"))
    case("uri-ctl", "request-line", "control char `\\x01` in the target", get("x", HOSTH, line="GET /s/uri-ctl\x01 HTTP/1.1"))
    case("options-star", "request-line", "`OPTIONS * HTTP/1.1`", get("x", HOSTH, line="OPTIONS * HTTP/1.1"))
    case("trace", "request-line", "`TRACE /`", get("x", HOSTH, line="TRACE /s/trace HTTP/1.1"))
    case("connect", "request-line", "`CONNECT a.example:443`",
         get("x", "Host: a.example:443", line="CONNECT a.example:443 HTTP/1.1"))
    return C


# ---------------------------------------------------------------------------------------------
# recording backend: one listener per proxy; every request it parses is attributed to the case
# that listener's proxy is running at the time.


def parse_head(buf):
    """The request head at the front of buf: (request dict, offset of its body), or None while
    incomplete (a head over 1 MiB is an error dict with offset -1)."""
    ends = [(i, n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2)) if i >= 0]
    if not ends:
        return None if len(buf) < 1 << 20 else ({"line": "?", "method": "?", "target": "?", "host": None,
                                                  "headers": [], "error": "head over 1 MiB"}, -1)
    end, sep = min(ends)
    head = buf[:end]
    lines = re.split(rb"\r?\n", head)
    parts = lines[0].split(b" ")
    req = {
        "line": lines[0].decode("latin-1"),
        "method": parts[0].decode("latin-1"),
        "target": parts[1].decode("latin-1") if len(parts) > 1 else "",
        "headers": [],
        "head": head[:4096].decode("latin-1"),
        "body": b"",
        "complete": False,
    }
    for ln in lines[1:]:
        name, _, value = ln.partition(b":")
        req["headers"].append((name.decode("latin-1"), value.strip().decode("latin-1")))
    host = [v for k, v in req["headers"] if k.lower() == "host"]
    req["host"] = host[0] if host else None
    return req, end + sep


def parse_body(req, buf, pos):
    """Frames req's body in buf from pos: bytes used in all, 0 while incomplete, -1 when the
    backend cannot frame it (it then closes). Fills req's body, framing, error."""
    hv = lambda n: [v for k, v in req["headers"] if k.lower() == n]  # noqa: E731
    te, cl = hv("transfer-encoding"), hv("content-length")
    if te:
        req["framing"] = "chunked"
        codings = [c.strip().lower() for c in ",".join(te).split(",")]
        if codings[-1] != "chunked":
            req["error"] = f"Transfer-Encoding {te!r} the backend cannot frame"
            return -1
        body, p = b"", pos
        while True:
            nl = buf.find(b"\n", p)
            if nl < 0:
                req["body"] = body
                return 0
            size_s = buf[p:nl].rstrip(b"\r").split(b";")[0].strip()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_s):
                req["error"] = f"bad chunk size {size_s[:40]!r}"
                req["body"] = body
                return -1
            size = int(size_s, 16)
            p = nl + 1
            if size == 0:
                trailers = []
                while True:  # trailers up to an empty line
                    nl = buf.find(b"\n", p)
                    if nl < 0:
                        req["body"] = body
                        return 0
                    line = buf[p:nl].rstrip(b"\r")
                    p = nl + 1
                    if not line:
                        break
                    trailers.append(line.decode("latin-1"))
                if trailers:
                    req["trailers"] = trailers
                req["body"] = body
                return p
            if len(buf) < p + size + 2:
                req["body"] = body + buf[p : p + size]
                return 0
            body += buf[p : p + size]
            p += size
            if buf[p : p + 2] == b"\r\n":
                p += 2
            elif buf[p : p + 1] == b"\n":
                p += 1
            else:
                req["error"] = "no CRLF after chunk data"
                req["body"] = body
                return -1
    if cl:
        vals = {v.strip() for v in ",".join(cl).split(",")}
        if len(vals) != 1 or not re.fullmatch(r"[0-9]{1,15}", next(iter(vals))):
            req["framing"] = "content-length ?"
            req["error"] = f"Content-Length {cl!r} the backend cannot frame"
            return -1
        n = int(next(iter(vals)))
        req["framing"] = f"content-length {n}"
        req["body"] = buf[pos : pos + n]
        return pos + n if len(buf) >= pos + n else 0
    req["framing"] = "none"
    return pos


class Recorder:
    """A raw-socket HTTP/1.1 server that logs what it receives and answers 200.

    A request counts from the moment its head is in (its body may never come); it is
    attributed to the case its listener's proxy was running then."""

    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.tag = None
        self.log = []  # (tag, request dict)
        self.bytes = {}  # tag -> bytes received while it was current
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def set_tag(self, tag):
        with self.lock:
            self.tag = tag

    def reset(self):
        with self.lock:
            self.log.clear()
            self.bytes.clear()

    def take(self, tag):
        with self.lock:
            reqs = [r for t, r in self.log if t == tag]
            return reqs, self.bytes.get(tag, 0)

    def strays(self):
        with self.lock:
            return [r for t, r in self.log if t is None]

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        c.settimeout(120)
        buf, cur = b"", None  # cur: (request, body offset) whose body is still coming
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.bytes[self.tag] = self.bytes.get(self.tag, 0) + len(data)
                buf += data
                while buf:
                    if cur is None:
                        h = parse_head(buf)
                        if h is None:
                            break
                        cur = h
                        with self.lock:
                            if cur[0]["target"] != "/healthz":  # lb's health check is not a case
                                self.log.append((self.tag, cur[0]))
                        if cur[1] < 0:
                            return
                    req, pos = cur
                    used = parse_body(req, buf, pos)
                    if used == 0:
                        break
                    if used < 0:
                        return  # cannot frame it: close (what came is logged)
                    req["complete"] = True
                    if req["target"] == "/healthz":
                        with self.lock:
                            self.bytes[self.tag] = max(0, self.bytes.get(self.tag, 0) - used)
                    buf, cur = buf[used:], None
                    body = b"ok" if req["target"] == "/healthz" else b"backend ok\n"
                    close = any(k.lower() == "connection" and "close" in v.lower() for k, v in req["headers"])
                    c.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: recorder\r\n"
                        + f"Content-Length: {len(body)}\r\n".encode()
                        + (b"Connection: close\r\n" if close else b"")
                        + b"\r\n"
                        + body
                    )
                    if close:
                        return
        except OSError:
            pass
        finally:
            c.close()


# ---------------------------------------------------------------------------------------------
# client: send the raw bytes, read responses until close, timeout, or a quiet spell after the
# last complete response


def parse_responses(buf):
    """Responses in buf: list of {status, complete, backend}; 'garbage' if not HTTP."""
    out, pos = [], 0
    while pos < len(buf):
        lead = buf[pos : pos + 5]
        if not b"HTTP/".startswith(lead):
            out.append({"status": "garbage", "complete": True, "backend": False})
            return out
        end = buf.find(b"\r\n\r\n", pos)
        m = re.match(rb"HTTP/\d\.\d (\d{3})", buf[pos : pos + 20])
        if end < 0:
            if m:
                out.append({"status": int(m.group(1)), "complete": False, "backend": False})
            return out
        if not m:
            out.append({"status": "garbage", "complete": True, "backend": False})
            return out
        status = int(m.group(1))
        hdrs = {}
        for ln in buf[pos:end].split(b"\r\n")[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        r = {"status": status, "complete": False, "backend": hdrs.get("x-backend") == "recorder"}
        out.append(r)
        p = end + 4
        if 100 <= status < 200 or status in (204, 304):
            r["complete"] = True
        elif "chunked" in hdrs.get("transfer-encoding", "").lower():
            while True:
                nl = buf.find(b"\r\n", p)
                if nl < 0:
                    return out
                size = int(buf[p:nl].split(b";")[0].strip() or b"0", 16)
                p = nl + 2
                if size == 0:
                    t = buf.find(b"\r\n\r\n", p - 2)
                    if t < 0:
                        return out
                    p = t + 4
                    break
                if len(buf) < p + size + 2:
                    return out
                p += size + 2
            r["complete"] = True
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"].split(",")[0])
            if len(buf) < p + n:
                return out
            p += n
            r["complete"] = True
        else:
            return out  # body until close
        pos = p
        if 100 <= status < 200:
            out.pop()  # interim responses are not counted
    return out


def exchange(port, data, timeout, quiet):
    t0 = time.monotonic()
    deadline = t0 + timeout
    s = socket.create_connection((HOST, port), timeout=timeout)
    buf, ended, quiet_until = b"", "timeout", None
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the proxy closed early (e.g. on a 64 KiB URI): read what it said
        while True:
            now = time.monotonic()
            wait = deadline - now
            if quiet_until is not None:
                wait = min(wait, quiet_until - now)
            if wait <= 0:
                ended = "open" if quiet_until is not None and now < deadline else "timeout"
                break
            s.settimeout(wait)
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                ended = "reset"
                break
            if not d:
                ended = "close"
                break
            buf += d
            rs = parse_responses(buf)
            quiet_until = now + quiet if rs and all(r["complete"] for r in rs) else None
    finally:
        s.close()
    rs = parse_responses(buf)
    if rs and ended in ("close", "reset") and not rs[-1]["complete"]:
        rs[-1]["complete"] = True  # body delimited by close
    return {"responses": rs, "ended": ended, "bytes": len(buf), "ms": round((time.monotonic() - t0) * 1000),
            "preview": buf[:300].decode("latin-1")}


# ---------------------------------------------------------------------------------------------
# processes

PROCS = []
TMP = None
KEEP_TMP = False


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own session: only what it started
            except OSError:
                pass
            p.wait()
    PROCS.clear()
    if TMP and os.path.isdir(TMP):
        if KEEP_TMP:
            print(f"# temp dir kept: {TMP}", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)


def start(argv, logname, env=None):
    log = open(os.path.join(TMP, logname), "wb")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    PROCS.append(p)
    return p


def die(msg):
    print(f"strictness.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_req(port, method, path, body=None, timeout=3):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        return r.status, r.read(), r.getheader("X-Backend")
    finally:
        c.close()


def wait_ready(what, port, path, proc, want_backend=True, deadline_s=15):
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode} (log in {TMP}; rerun with --keep-tmp)")
        try:
            st, _, xb = http_req(port, "GET", path, timeout=1)
            if st == 200 and (xb == "recorder" or not want_backend):
                return
            last = st
        except OSError as e:
            last = e
        time.sleep(0.1)
    die(f"{what} on port {port} not ready within {deadline_s}s (last: {last}; log in {TMP})")


def tool(name):
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


def start_all(lb_bin, rec):
    nginx, haproxy = tool("nginx"), tool("haproxy")
    missing = [n for n, t in (("nginx-light", nginx), ("haproxy", haproxy)) if not t]
    if missing:
        die(f"missing: {' '.join(missing)}; install with: sudo apt-get install -y {' '.join(missing)}")
    if not os.access(lb_bin, os.X_OK):
        die(f"no lb binary at {lb_bin}: run 'cargo build --release -p lb' (or pass --lb-bin)")
    ports = {p: free_port() for p in PROXIES}
    ports["admin"] = free_port()

    # nginx: reverse proxy as in bench/compare.sh (keep-alive upstream, HTTP/1.1, Host $host)
    pre = os.path.join(TMP, "nginx")
    os.makedirs(os.path.join(pre, "logs"))
    user = "user root;" if os.getuid() == 0 else ""
    with open(os.path.join(pre, "nginx.conf"), "w") as f:
        f.write(f"""{user}
worker_processes 1;
daemon off;
master_process on;
pid {pre}/nginx.pid;
error_log {pre}/logs/error.log info;
events {{ worker_connections 1024; }}
http {{
  access_log {pre}/logs/access.log;
  client_body_temp_path {pre}/client_body;
  proxy_temp_path {pre}/proxy;
  fastcgi_temp_path {pre}/fastcgi;
  uwsgi_temp_path {pre}/uwsgi;
  scgi_temp_path {pre}/scgi;
  default_type text/plain;
  upstream backend {{
    server {HOST}:{rec['nginx'].port};
    keepalive 16;
  }}
  server {{
    listen {HOST}:{ports['nginx']};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }}
  }}
}}
""")
    procs = {"nginx": start([nginx, "-p", pre, "-c", f"{pre}/nginx.conf", "-e", f"{pre}/logs/error.log"], "nginx.out")}

    # HAProxy: mode http, keep-alive, as in bench/compare.sh
    cfg = os.path.join(TMP, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"""global
  maxconn 1024
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
  timeout http-keep-alive 10s
frontend fe
  bind {HOST}:{ports['haproxy']}
  default_backend be
backend be
  server rec {HOST}:{rec['haproxy'].port}
""")
    procs["haproxy"] = start([haproxy, "-db", "-f", cfg], "haproxy.out")

    # lb: run from a copy (a rebuild during the run changes nothing), pool `/` in proxy mode
    lb_copy = os.path.join(TMP, "lb")
    shutil.copy2(lb_bin, lb_copy)
    env = dict(os.environ, LB_LOG="warn")
    procs["lb"] = start([lb_copy, "--listen", f"{HOST}:{ports['lb']}", "--admin", f"{HOST}:{ports['admin']}",
                         "--data-dir", os.path.join(TMP, "lb-data"), "--threads", "1"], "lb.out", env=env)
    wait_ready("lb admin", ports["admin"], "/healthz", procs["lb"], want_backend=False)
    # Checks once an hour, and never sick or evicted: a case that makes lb count a backend
    # failure (reported per case) must not change what later cases see.
    pool = {"pattern": "/", "mode": "proxy",
            "health_check": {"interval_ms": 3600000, "fall": 1000000, "evict_after": 0}}
    st, body, _ = http_req(ports["admin"], "POST", "/v1/pools", json.dumps(pool).encode(), timeout=30)
    if st != 201:
        die(f"lb admin POST /v1/pools answered {st}: {body[:300]!r}")
    be = {"ip": HOST, "port": rec["lb"].port, "url_path": "/"}
    st, body, _ = http_req(ports["admin"], "POST", "/v1/pool/backends?pattern=/", json.dumps(be).encode(), timeout=30)
    if st != 201:
        die(f"lb admin POST /v1/pool/backends answered {st}: {body[:300]!r}")

    for p in PROXIES:
        wait_ready(p, ports[p], "/ready", procs[p])
    return ports, procs


# ---------------------------------------------------------------------------------------------
# verdicts and report


def lb_failures(admin):
    """lb's count of failures in a row for its one backend, and the last error."""
    try:
        st, body, _ = http_req(admin, "GET", "/v1/pool?pattern=/", timeout=5)
        b = json.loads(body)["backends"][0]
        return b["consecutive_failures"], b.get("last_error")
    except (OSError, ValueError, KeyError, IndexError):
        return None, None


def summarize(res):
    rs = res["responses"]
    reqs = res["backend"]
    first = rs[0]["status"] if rs else ("close" if res["ended"] in ("close", "reset") else "timeout")
    forwarded = len(reqs) > 0 or res["backend_bytes"] > 0
    rejects = not forwarded and (first in ("close",) or (isinstance(first, int) and first >= 400))
    smuggled = any("/smuggled/" in r["target"] for r in reqs)
    return {"first": first, "n": len(rs), "fwd": len(reqs), "fwd_bytes": res["backend_bytes"],
            "rejects": rejects, "smuggled": smuggled,
            "partial": any(not r["complete"] for r in reqs), "backend_failure": res.get("backend_failure")}


def sig(reqs):
    return [(r["method"], r["target"], (r["host"] or "").lower(), len(r["body"]), r["complete"]) for r in reqs]


def cell(s):
    out = str(s["first"])
    if s["n"] > 1:
        out += f" ×{s['n']}"
    if s["fwd"] or s["fwd_bytes"]:
        out += f", fwd {s['fwd']}" if s["fwd"] else ", fwd bytes"
    if s["partial"]:
        out += " (partial)"
    if s["smuggled"]:
        out += " **smug**"
    if s.get("backend_failure"):
        out += " †"
    return out


def describe(reqs):
    if not reqs:
        return "nothing"
    parts = []
    for r in reqs:
        d = f"`{r['line'][:80]}` Host `{r['host']}`"
        body = r.get("body", b"")
        d += f", {r.get('framing', '?')}, body {len(body)} B" + ("" if r["complete"] else " (incomplete)")
        if body and len(body) <= 60:
            d += f" `{body.decode('latin-1')!r}`"
        if r.get("error"):
            d += f" (backend: {r['error']})"
        parts.append(d)
    return "; ".join(parts)


def md_escape(s):
    return s.replace("|", "\\|")


def main():
    global TMP, KEEP_TMP
    ap = argparse.ArgumentParser(description="strictness of lb vs nginx and HAProxy on hostile HTTP/1.1 inputs")
    ap.add_argument("--lb-bin", default=os.environ.get("LB_BIN", os.path.join(ROOT, "target/release/lb")))
    ap.add_argument("--check", action="store_true", help="exit 1 when lb is laxer on any case")
    ap.add_argument("--only", default="", help="comma-separated case ids")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per case and proxy (default 3)")
    ap.add_argument("--quiet", type=float, default=0.5, help="seconds to wait for more after a complete response")
    ap.add_argument("--out", default=None, help="Markdown report (default bench/results/strictness-DATE.md)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, server logs)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    KEEP_TMP = args.keep_tmp

    cases = build_cases()
    if args.list:
        for c in cases:
            print(f"{c['id']:24} {c['group']:13} {c['desc']}")
        return 0
    if args.only:
        want = set(args.only.split(","))
        unknown = want - {c["id"] for c in cases}
        if unknown:
            die(f"unknown case ids: {', '.join(sorted(unknown))} (see --list)")
        cases = [c for c in cases if c["id"] in want]

    TMP = tempfile.mkdtemp(prefix="lb-strict.")
    atexit.register(cleanup)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda n, f: sys.exit(128 + n))

    rec = {p: Recorder(p) for p in PROXIES}
    ports, procs = start_all(args.lb_bin, rec)
    for r in rec.values():  # the readiness probes are not cases
        r.set_tag(None)
        r.reset()

    def version(argv):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    git = version(["git", "-C", ROOT, "log", "-1", "--format=%h %s"])
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.count("\n")
    header = [
        f"# lb strictness vs nginx and HAProxy, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        "",
        f"- lb: `{args.lb_bin}` at `{git}` ({dirty} files modified in the work tree)",
        f"- nginx: `{version([tool('nginx'), '-v']).replace('nginx version: ', '')}`, "
        "`proxy_pass` to a keep-alive upstream, `proxy_http_version 1.1`, `Host $host`",
        f"- HAProxy: `{' '.join(version([tool('haproxy'), '-v']).split()[:3])}`, `mode http`, `option http-keep-alive`",
        "- lb: pool `/` in proxy mode, one backend, defaults otherwise",
        f"- each case on a fresh connection per proxy, {args.timeout:g} s per case, loopback only",
        "",
    ]
    print("\n".join(header), flush=True)

    results = []
    fails_before, _ = lb_failures(ports["admin"])
    for i, c in enumerate(cases):
        out = {}

        def run(p, c=c, out=out):
            rec[p].set_tag(c["id"])
            try:
                out[p] = exchange(ports[p], c["raw"], args.timeout, args.quiet)
            except OSError as e:
                out[p] = {"responses": [], "ended": f"error {e}", "bytes": 0, "ms": 0, "preview": ""}

        ths = [threading.Thread(target=run, args=(p,)) for p in PROXIES]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        time.sleep(0.2)  # let anything still in flight to the backend land
        row = {"case": c, "res": out, "sum": {}}
        for p in PROXIES:
            rec[p].set_tag(None)
            reqs, nbytes = rec[p].take(c["id"])
            out[p]["backend"], out[p]["backend_bytes"] = reqs, nbytes
            if p == "lb":
                fails, err = lb_failures(ports["admin"])
                if fails is not None and fails_before is not None and fails > fails_before:
                    out[p]["backend_failure"] = err or "?"
                fails_before = fails
            row["sum"][p] = summarize(out[p])
        S = row["sum"]
        other_rejects = S["nginx"]["rejects"] or S["haproxy"]["rejects"]
        row["verdict"] = "LAXER" if other_rejects and not S["lb"]["rejects"] else "ok"
        sl, sn, sh = sig(out["lb"]["backend"]), sig(out["nginx"]["backend"]), sig(out["haproxy"]["backend"])
        row["fwd_differs"] = bool(sl) and sl != sn and sl != sh
        row["sigs_differ"] = not (sl == sn == sh)
        results.append(row)
        mark = row["verdict"] + (" fwd≠" if row["fwd_differs"] else "")
        print(f"[{i + 1:2}/{len(cases)}] {c['id']:24} nginx {cell(S['nginx']):22} haproxy {cell(S['haproxy']):22} "
              f"lb {cell(S['lb']):22} {mark}", file=sys.stderr, flush=True)
        for p in PROXIES:
            if procs[p].poll() is not None:
                die(f"{p} exited during case {c['id']} (log in {TMP})")

    strays = {p: rec[p].strays() for p in PROXIES}

    # ---- report ----
    L = []
    L.append("| case | what | nginx | HAProxy | lb | verdict |")
    L.append("|---|---|---|---|---|---|")
    group = None
    for row in results:
        c, S = row["case"], row["sum"]
        if c["group"] != group:
            group = c["group"]
            L.append(f"| **{group}** | | | | | |")
        v = "**LAXER**" if row["verdict"] == "LAXER" else "ok"
        if row["fwd_differs"]:
            v += " fwd≠"
        L.append(f"| `{c['id']}` | {md_escape(c['desc'])} | {md_escape(cell(S['nginx']))} | "
                 f"{md_escape(cell(S['haproxy']))} | {md_escape(cell(S['lb']))} | {v} |")
    n_lax = sum(r["verdict"] == "LAXER" for r in results)
    n_fwd = sum(r["fwd_differs"] for r in results)
    n_fail = sum(bool(r["sum"]["lb"].get("backend_failure")) for r in results)
    by_group = {}
    for r in results:
        if r["verdict"] == "LAXER":
            by_group[r["case"]["group"]] = by_group.get(r["case"]["group"], 0) + 1
    groups = ", ".join(f"{g} {n}" for g, n in by_group.items())
    summary = (f"{len(results)} cases, {n_lax} where lb is laxer" + (f" ({groups})" if groups else "")
               + f"; {n_fwd} where lb forwards something neither other does; {n_fail} where lb counted a backend failure")
    legend = [
        "",
        "Cells: first response status (`close`: closed without a response, `timeout`: nothing within the "
        "case's time), `×N` when N responses came back, `fwd N` when the backend received N requests for the "
        "case (`fwd bytes`: bytes it could not parse as a request), **smug** when one of them was a "
        "`GET /smuggled/...` hidden in the case's body, `(partial)` when a request's body never fully arrived, "
        "† when lb counted a backend failure (passive health check) for the case. A proxy *rejects* when it answers 4xx/5xx or closes "
        "without a response and the backend received nothing. `LAXER`: nginx or HAProxy rejects and lb does "
        "not. `fwd≠`: lb forwarded, and what the backend saw via lb (method, target, Host, body length) "
        "differs from what it saw via nginx and via HAProxy.",
    ]
    details = ["", "## What the backend received where the proxies differ", ""]
    for row in results:
        if not row["sigs_differ"]:
            continue
        c = row["case"]
        details.append(f"- `{c['id']}` ({md_escape(c['desc'])}):")
        for p in PROXIES:
            details.append(f"  - {TITLES[p]}: {md_escape(describe(row['res'][p]['backend']))}")
    failed = [r for r in results if r["sum"]["lb"].get("backend_failure")]
    if failed:
        details += ["", "## Cases lb counted as a failure of its backend (†)", ""]
        for row in failed:
            details.append(f"- `{row['case']['id']}`: {md_escape(str(row['sum']['lb']['backend_failure']))}")
    if any(strays.values()):
        details += ["", "Requests the backend received outside any case's window (attribution may be off):"]
        for p in PROXIES:
            for r in strays[p]:
                details.append(f"- via {p}: `{r['line'][:80]}`")
    report = "\n".join(header + L + legend + ["", f"**{summary}**"] + details) + "\n"
    print("\n".join(L + legend + ["", summary] + details))

    out = args.out
    if out is None:
        os.makedirs(os.path.join(BENCH, "results"), exist_ok=True)
        out = os.path.join(BENCH, "results", f"strictness-{datetime.datetime.now():%Y%m%d-%H%M%S}.md")
    with open(out, "w") as f:
        f.write(report)
    jpath = os.path.splitext(out)[0] + ".json"
    with open(jpath, "w") as f:
        json.dump([{"id": r["case"]["id"], "raw": r["case"]["raw"][:2000].decode("latin-1"),
                    "verdict": r["verdict"], "fwd_differs": r["fwd_differs"],
                    "proxies": {p: {"summary": r["sum"][p], "ended": r["res"][p]["ended"], "ms": r["res"][p]["ms"],
                                    "client_saw": r["res"][p]["preview"],
                                    "backend": [{k: (v.decode("latin-1") if isinstance(v, bytes) else v)
                                                 for k, v in q.items()} for q in r["res"][p]["backend"]]}
                                for p in PROXIES}} for r in results], f, indent=1)
    print(f"\nsaved to {os.path.relpath(out, ROOT)} (raw exchanges: {os.path.relpath(jpath, ROOT)})")
    return 1 if args.check and n_lax else 0


if __name__ == "__main__":
    sys.exit(main())
