#!/usr/bin/python3
"""slow_reader.py -- a WebSocket client that sends and does not read.

    slow_reader.py HOST PORT TOKEN WORKER_PID FRAMES LINES SECONDS

Phase 1 sends up to FRAMES text frames, each one valid record and LINES
invalid ones ({"status":"x"}), without reading anything, for at most SECONDS
or until the socket has accepted nothing for 2 s (the server stopped
reading).  Meanwhile it samples the ingest worker's resident memory
(VmRSS of WORKER_PID).  Phase 2 sends what is left of a frame cut short,
then reads every answer until the server has settled all it was sent
(or 10 s pass in silence, or 30 s in all).  Prints one JSON object:
  frames, stalled, rss_start_kb, rss_max_kb, error_lines, error_count,
  ack_count.
"""
import base64
import errno
import json
import os
import select
import socket
import struct
import sys
import time

host, port, token, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
max_frames, lines, seconds = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])


def rss_kb():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def frame(payload):
    """One masked text frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


s = socket.create_connection((host, port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ingest HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: %s\r\nAuthorization: Bearer %s\r\n\r\n"
           % (host, port, key, token)).encode())
resp = b""
while b"\r\n\r\n" not in resp:
    chunk = s.recv(1)
    if not chunk:
        sys.exit("connection closed during the handshake")
    resp += chunk
if b" 101 " not in resp.split(b"\r\n", 1)[0]:
    sys.exit("handshake refused: %r" % resp)
rest = b""

one = frame(('{"message": "good"}\n' + '{"status":"x"}\n' * lines).encode())
s.setblocking(False)
rss_start = rss_max = rss_kb()
sent_frames = 0
pending = b""
t0 = time.time()
last_progress = t0
stalled = False
while time.time() - t0 < seconds:
    if not pending and sent_frames < max_frames:
        pending = one
        sent_frames += 1
    if not pending:
        break
    try:
        n = s.send(pending)
        pending = pending[n:]
        last_progress = time.time()
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise
        if time.time() - last_progress > 2:
            stalled = True
            break
        select.select([], [s], [], 0.05)
    rss_max = max(rss_max, rss_kb())
rss_max = max(rss_max, rss_kb())

# Phase 2: finish the frame in flight while reading every answer.
expected = sent_frames * (lines + 1)
errors = count = acks = 0
buf = b""
quiet_since = t2 = time.time()
while (time.time() - quiet_since < 10 and time.time() - t2 < 30
       and errors + count + acks < expected):
    r, w, _ = select.select([s], [s] if pending else [], [], 0.05)
    if w:
        try:
            pending = pending[s.send(pending):]
        except BlockingIOError:
            pass
    if not r:
        continue
    data = s.recv(1 << 20)
    if not data:
        break
    quiet_since = time.time()
    buf += data
    while len(buf) >= 2:
        b1 = buf[1] & 0x7F
        off = 2
        if b1 == 126:
            if len(buf) < 4:
                break
            b1 = struct.unpack("!H", buf[2:4])[0]
            off = 4
        elif b1 == 127:
            if len(buf) < 10:
                break
            b1 = struct.unpack("!Q", buf[2:10])[0]
            off = 10
        if len(buf) < off + b1:
            break
        opcode = buf[0] & 0x0F
        payload = buf[off:off + b1]
        buf = buf[off + b1:]
        if opcode == 0x9:   # ping: answer it
            pending += bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload
            continue
        if opcode != 0x1:
            continue
        for line in payload.decode().split("\n"):
            msg = json.loads(line)
            if "error" in msg:
                if "count" in msg:
                    count += msg["count"]
                else:
                    errors += 1
            acks += msg.get("ack_count", 0)

print(json.dumps({"frames": sent_frames, "stalled": stalled, "rss_start_kb": rss_start,
                  "rss_max_kb": rss_max, "error_lines": errors, "error_count": count,
                  "ack_count": acks}))
