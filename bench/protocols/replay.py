#!/usr/bin/env python3
"""replay.py -- replay pre-generated HTTP request bodies over keep-alive
connections and wait for every reply (bench/protocols).

    replay.py --port P --token T [--conns K] [--rounds R] OUTDIR

OUTDIR holds body.0, body.1, ... and "request" (first line "POST /path",
then header lines), as written by a generator in bodies/.  Every request
is built in memory before the clock starts.  K threads, each with its
own keep-alive connection to 127.0.0.1:P, take the next body until all
R x (number of bodies) are sent, each waiting for its reply before its
next request (the server replies after the COMMIT that stored the body).
Prints one line of JSON: requests, ok (2xx replies), failed, seconds
(first send to last reply), client_cpu (this process's user+system
seconds, to show the client is not the bottleneck), and the first
non-2xx reply, if any.  Exits 1 when a reply was not 2xx.
"""
import argparse
import itertools
import json
import os
import socket
import sys
import threading
import time


def load(outdir, token, port):
    with open(os.path.join(outdir, "request")) as f:
        lines = [l.rstrip("\r\n") for l in f if l.strip()]
    method, path = lines[0].split()[:2]
    headers = lines[1:] + [f"Host: 127.0.0.1:{port}", f"Authorization: Bearer {token}"]
    bodies = []
    for i in itertools.count():
        p = os.path.join(outdir, f"body.{i}")
        if not os.path.exists(p):
            break
        with open(p, "rb") as f:
            body = f.read()
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + \
            f"Content-Length: {len(body)}\r\n\r\n"
        bodies.append(head.encode() + body)
    return bodies


def read_reply(sock, buf):
    """One HTTP/1.1 reply: (status, body, keep_alive, rest of buf)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed before a reply")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for l in lines[1:]:
        k, _, v = l.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "connection" and v.strip().lower() == "close":
            close = True
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a reply")
        buf += chunk
    return status, buf[:length], not close, buf[length:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("outdir")
    a = ap.parse_args()

    bodies = load(a.outdir, a.token, a.port)
    total = len(bodies) * a.rounds
    counter = itertools.count()
    lock = threading.Lock()
    res = {"requests": 0, "ok": 0, "failed": 0, "first_error": None}

    def worker():
        sock, buf = None, b""
        while True:
            i = next(counter)
            if i >= total:
                break
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", a.port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            sock.sendall(bodies[i % len(bodies)])
            status, body, keep, buf = read_reply(sock, buf)
            with lock:
                res["requests"] += 1
                if 200 <= status < 300:
                    res["ok"] += 1
                else:
                    res["failed"] += 1
                    if res["first_error"] is None:
                        res["first_error"] = f"{status} {body[:300].decode('utf-8', 'replace')}"
            if not keep:
                sock.close()
                sock = None
        if sock:
            sock.close()

    c0 = os.times()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(a.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t1 = time.monotonic()
    c1 = os.times()
    res["seconds"] = round(t1 - t0, 4)
    res["client_cpu"] = round((c1.user - c0.user) + (c1.system - c0.system), 3)
    print(json.dumps(res))
    sys.exit(0 if res["failed"] == 0 and res["requests"] == total else 1)


if __name__ == "__main__":
    main()
