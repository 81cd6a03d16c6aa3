#!/usr/bin/python3
"""tail_bench.py -- the live tail's latency and its cost to ingest.

    tail_bench.py latency --ingest-port P --reader-port R --source-token T
                          --reader-token T --cli PATH [--count N] [--rate R]
    tail_bench.py stall   --ingest-port P --reader-port R --reader-token T
                          --emit PATH --source-token T [--subscribers 10]
                          [--pairs 2] [--emitters 2] [--per-emitter N]

latency: records go over WebSocket /ingest one per frame at --rate per
second, each carrying its number; a WebSocket subscriber to /tail (in this
process) and `logagg-tail --json` (a child process whose lines are
timestamped as they arrive) receive them.  The ingest worker acks after
COMMIT, so for each record

    arrival - ack received   <= arrival - COMMIT (the true latency)
    arrival - sent           >= arrival - COMMIT

and the two bound the true latency from below and above.  One clock
(time.monotonic in this process) takes every timestamp.

stall: rounds of logagg-emit runs (rows/s from their acked counts and the
wall clock), alternately without and with SUBSCRIBERS raw /tail
connections that complete the upgrade and then never read (small receive
buffers); in ABBA order so that drift in the machine's load cancels.  After
each "with" round the stalled sockets are finally read to the end, and
must hold {"dropped": N} notices.

Prints one JSON object (the figures) on stdout.  Uses Debian's
python3-websockets: run with /usr/bin/python3.
"""
import argparse
import asyncio
import json
import math
import os
import re
import selectors
import socket
import statistics
import struct
import sys
import time

import websockets


def pct(values, p):
    if not values:
        return None
    s = sorted(values)          # nearest rank
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def summary(ms):
    return {"n": len(ms), "min_ms": round(min(ms), 2), "p50_ms": round(pct(ms, 50), 2),
            "p99_ms": round(pct(ms, 99), 2), "max_ms": round(max(ms), 2)} if ms else {"n": 0}


# ---- latency ----

async def latency(a):
    run = "%d-%d" % (os.getpid(), int(time.time()))
    pat = re.compile(r'"message": ?"lat %s (\d+)"' % re.escape(run))
    sent, acked, ws_arr, cli_arr = {}, {}, {}, {}
    auth = {"Authorization": "Bearer " + a.reader_token}
    tail = await websockets.connect("ws://127.0.0.1:%d/tail" % a.reader_port,
                                    extra_headers=auth, max_size=None)
    env = dict(os.environ, LOGAGG_TOKEN=a.reader_token)
    cli = await asyncio.create_subprocess_exec(
        a.cli, "--port", str(a.reader_port), "--json", "--verbose",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    while True:         # connected?
        line = await asyncio.wait_for(cli.stderr.readline(), 30)
        if not line:
            raise SystemExit("logagg-tail ended: is the reader worker up?")
        if b"connected" in line:
            break

    async def drain_stderr():
        while await cli.stderr.readline():
            pass

    async def read_ws():
        async for msg in tail:
            t = time.monotonic()
            m = pat.search(msg)
            if m:
                ws_arr[int(m.group(1))] = t

    async def read_cli():
        while True:
            line = await cli.stdout.readline()
            t = time.monotonic()
            if not line:
                return
            m = pat.search(line.decode())
            if m:
                cli_arr[int(m.group(1))] = t

    tasks = [asyncio.create_task(read_ws()), asyncio.create_task(read_cli()),
             asyncio.create_task(drain_stderr())]
    ingest = await websockets.connect("ws://127.0.0.1:%d/ingest" % a.ingest_port,
                                      extra_headers={"Authorization": "Bearer " + a.source_token})

    async def read_acks():
        next_ack = 0
        async for msg in ingest:
            t = time.monotonic()
            d = json.loads(msg)
            for _ in range(d.get("ack_count", 0)):
                acked[next_ack] = t
                next_ack += 1
            if "error" in d:
                raise SystemExit("ingest error: %s" % msg)

    tasks.append(asyncio.create_task(read_acks()))
    # warm-up: both subscribers see a record before measuring
    await ingest.send(json.dumps({"message": "lat %s warmup" % run}))
    t0 = time.monotonic()
    start = t0 + 0.5
    for k in range(a.count):
        due = start + k / a.rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        sent[k] = time.monotonic()
        await ingest.send(json.dumps({"message": "lat %s %d" % (run, k)}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(ws_arr) < a.count or len(cli_arr) < a.count):
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    cli.terminate()
    await cli.wait()
    await tail.close()
    await ingest.close()
    for t in tasks:
        t.cancel()

    out = {"records": a.count, "rate_per_s": a.rate, "seconds": round(elapsed, 1),
           "acked": len(acked) - 1}   # the warm-up record is acked first
    # the warm-up record took ack slot 0: record k has slot k + 1
    for name, arr in (("ws", ws_arr), ("cli", cli_arr)):
        after_ack = [1000 * (arr[k] - acked[k + 1]) for k in arr if k + 1 in acked]
        after_send = [1000 * (arr[k] - sent[k]) for k in arr]
        out[name] = {"received": len(arr),
                     "arrival_minus_ack": summary(after_ack),
                     "arrival_minus_send": summary(after_send)}
    out["ack_minus_send"] = summary([1000 * (acked[k + 1] - sent[k]) for k in sent if k + 1 in acked])
    return out


# ---- stall ----

def stalled_socket(port, token):
    """A /tail WebSocket that completes the upgrade and then stops reading."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET /tail HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (port, token)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        c = s.recv(1)
        if not c:
            raise SystemExit("stalled subscriber: connection closed during the upgrade")
        head += c
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit("stalled subscriber: %r" % head.split(b"\r\n")[0])
    return s


def read_all(socks, quiet_s=3.0, limit_s=50.0):
    """Read the stalled sockets now, all at once (the server hangs up on a
    client that has not answered its pings for 60 s, so one at a time
    would be too slow): per socket (records, dropped total, notices, the
    server's close frame as "CODE REASON" or None, whether it hung up)."""
    sel = selectors.DefaultSelector()
    bufs = {s: bytearray() for s in socks}
    last = {s: time.monotonic() for s in socks}
    eof = {s: False for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        now = time.monotonic()
        if all(eof[s] or now - last[s] > quiet_s for s in socks):
            break
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                chunk = s.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                eof[s] = True
                sel.unregister(s)
                continue
            bufs[s] += chunk
            last[s] = time.monotonic()
    sel.close()
    return [parse_frames(bufs[s]) + (eof[s],) for s in socks]


def parse_frames(buf):
    """(records, dropped total, notices, close frame) in server frames."""
    records = dropped = notices = 0
    closed = None
    i = 0
    while i + 2 <= len(buf):
        op = buf[i] & 0x0F
        n = buf[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            n = struct.unpack(">H", buf[j:j + 2])[0]
            j += 2
        elif n == 127:
            n = struct.unpack(">Q", buf[j:j + 8])[0]
            j += 8
        if j + n > len(buf):
            break
        if op == 8:
            body = bytes(buf[j:j + n])
            closed = "%d %s" % (struct.unpack(">H", body[:2])[0] if n >= 2 else 0,
                                body[2:].decode(errors="replace"))
        elif op == 1:
            d = json.loads(bytes(buf[j:j + n]))
            if "dropped" in d:
                dropped += d["dropped"]
                notices += 1
            elif "id" in d:
                records += 1
        i = j + n
    return records, dropped, notices, closed


async def emit_round(a):
    procs = []
    t0 = time.monotonic()
    for i in range(a.emitters):
        procs.append(await asyncio.create_subprocess_exec(
            a.emit, "--url", "ws://127.0.0.1:%d/ingest" % a.ingest_port, "--token", a.source_token,
            "--profile", "a", "--count", str(a.per_emitter), "--batch", "200", "--quiet",
            "--seed", str(i + 1), stdout=asyncio.subprocess.PIPE))
    acked = 0
    for p in procs:
        out, _ = await p.communicate()
        m = re.search(rb"acked (\d+)", out)
        acked += int(m.group(1)) if m else 0
    secs = time.monotonic() - t0
    return acked, secs


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (0 when unknown)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


async def stall(a):
    hz = os.sysconf("SC_CLK_TCK")
    order = []
    for _ in range(a.pairs):
        order += [False, True, True, False]
    rounds = []
    for with_subs in order:
        socks = [stalled_socket(a.reader_port, a.reader_token) for _ in range(a.subscribers)] \
            if with_subs else []
        c0 = {p: cpu_ticks(p) for p in (a.ingest_pid, a.reader_pid)}
        acked, secs = await emit_round(a)
        c1 = {p: cpu_ticks(p) for p in (a.ingest_pid, a.reader_pid)}
        r = {"with_stalled": with_subs, "rows": acked, "seconds": round(secs, 2),
             "rows_per_s": round(acked / secs),
             "ingest_cpu_us_per_row": round(1e6 * (c1[a.ingest_pid] - c0[a.ingest_pid]) / hz / max(acked, 1), 2),
             "reader_cpu_us_per_row": round(1e6 * (c1[a.reader_pid] - c0[a.reader_pid]) / hz / max(acked, 1), 2),
             "load1": os.getloadavg()[0]}
        if socks:
            got = read_all(socks)
            for s in socks:
                s.close()
            # a token for every source: each record is either received or
            # counted in a notice
            r["stalled"] = [{"records": g[0], "dropped": g[1], "notices": g[2],
                             "unaccounted": acked - g[0] - g[1], "closed": g[3],
                             "hung_up": g[4]} for g in got]
        rounds.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "stalled"}), file=sys.stderr, flush=True)
    without = [r["rows_per_s"] for r in rounds if not r["with_stalled"]]
    with_ = [r["rows_per_s"] for r in rounds if r["with_stalled"]]
    stalled = [x for r in rounds for x in r.get("stalled", [])]

    def mean_of(key, with_subs):
        return round(statistics.mean(r[key] for r in rounds if r["with_stalled"] == with_subs), 2)
    return {"rounds": rounds,
            "ingest_cpu_us_per_row_without": mean_of("ingest_cpu_us_per_row", False),
            "ingest_cpu_us_per_row_with": mean_of("ingest_cpu_us_per_row", True),
            "reader_cpu_us_per_row_with": mean_of("reader_cpu_us_per_row", True),
            "rows_per_s_without": round(statistics.mean(without)),
            "rows_per_s_with": round(statistics.mean(with_)),
            "ratio": round(statistics.mean(with_) / statistics.mean(without), 3),
            "stalled_with_dropped_notice": sum(1 for x in stalled if x["notices"] > 0),
            "stalled_unaccounted_records": sum(x["unaccounted"] for x in stalled),
            "stalled_total": len(stalled)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["latency", "stall"])
    ap.add_argument("--ingest-port", type=int, required=True)
    ap.add_argument("--reader-port", type=int, required=True)
    ap.add_argument("--source-token", required=True)
    ap.add_argument("--reader-token", required=True)
    ap.add_argument("--cli", default="logagg-tail")
    ap.add_argument("--emit", default="logagg-emit")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--subscribers", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--emitters", type=int, default=2)
    ap.add_argument("--per-emitter", type=int, default=100000)
    ap.add_argument("--ingest-pid", type=int, default=0, help="for CPU per row")
    ap.add_argument("--reader-pid", type=int, default=0, help="for CPU per row")
    a = ap.parse_args()
    res = asyncio.run(latency(a) if a.mode == "latency" else stall(a))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
