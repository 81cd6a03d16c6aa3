#!/usr/bin/python3
"""tail_client.py -- a scripted client of the reader's live tail and of
the ingest worker's POST /ingest, for logagg's TAP tests.

    tail_client.py STEP...

Each STEP is one of
    tail:NAME:URL            open a WebSocket to URL (ws://.../tail?...)
    hold:NAME:URL            the same, but NAME is never read (its frames
                             pile up in the server: a slow subscriber)
    upgrade:NAME:URL         a raw upgrade request; prints the HTTP status
                             and the body of a refusal
    post:URL::TOKEN:BODY     POST BODY (\\n = newline) to URL with the token;
                             prints the status and the reply
    postfile:URL::TOKEN:PATH the same with the contents of file PATH
    recv:NAME:COUNT:SECONDS  print the next COUNT frames of NAME (at most
                             SECONDS in all), each with the milliseconds
                             since the last post's reply
    until:NAME:SECONDS:REGEX print frames until one matches REGEX
    close:NAME               close NAME
    waitfile:PATH            wait until file PATH exists (at most 120 s)
Every outcome is one line: NAME open | NAME status CODE BODY |
NAME frame MS MESSAGE | NAME timeout | NAME closed CODE REASON |
post STATUS REPLY.  Uses Debian's python3-websockets.
"""
import asyncio
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.request

import websockets

last_post = time.monotonic()


async def upgrade(name, url):
    rest = url.split("//", 1)[1]
    hostport, _, path = rest.partition("/")
    host, port = hostport.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % (path, host))
    writer.write(req.encode())
    data = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and (b" 101 " in data.split(b"\r\n", 1)[0]
                                        or data.endswith(b"}")):
                break
    except asyncio.TimeoutError:
        pass
    writer.close()
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    parts = head.split()
    print(name, "status", parts[1] if len(parts) > 1 else "none", body, flush=True)


def post(url, token, body):
    global last_post
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, reply = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, reply = e.code, e.read().decode()
    last_post = time.monotonic()
    print("post", status, reply, flush=True)


def show(name, msg):
    ms = (time.monotonic() - last_post) * 1000
    print(name, "frame", "%.1f" % ms, msg, flush=True)


async def main(steps):
    conns = {}
    for step in steps:
        kind, _, rest = step.partition(":")
        if kind in ("post", "postfile"):
            url, _, rest = rest.partition("::")
            token, _, body = rest.partition(":")
            if kind == "postfile":
                with open(body) as f:
                    body = f.read()
            else:
                body = body.replace("\\n", "\n")
            await asyncio.get_running_loop().run_in_executor(
                None, post, url, token, body)
            continue
        if kind == "waitfile":
            deadline = time.monotonic() + 120
            while not os.path.exists(rest) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            continue
        name, _, arg = rest.partition(":")
        try:
            if kind in ("tail", "hold"):
                try:
                    kw = {}
                    if kind == "hold":
                        # a small receive buffer, and the library stops
                        # reading after one message: the server's queue fills
                        host, port = arg.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
                        sock = socket.socket()
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                        sock.connect((host, int(port)))
                        kw = {"max_queue": 1, "read_limit": 2 ** 12, "sock": sock}
                    conns[name] = await websockets.connect(arg, max_size=None,
                                                           open_timeout=5, **kw)
                    print(name, "open", flush=True)
                except websockets.InvalidStatusCode as e:
                    print(name, "status", e.status_code, flush=True)
            elif kind == "upgrade":
                await upgrade(name, arg)
            elif kind == "recv":
                count, _, secs = arg.partition(":")
                deadline = time.monotonic() + float(secs)
                for _ in range(int(count)):
                    msg = await asyncio.wait_for(conns[name].recv(),
                                                 max(deadline - time.monotonic(), 0.001))
                    show(name, msg)
            elif kind == "until":
                secs, _, pattern = arg.partition(":")
                deadline = time.monotonic() + float(secs)
                while True:
                    msg = await asyncio.wait_for(conns[name].recv(),
                                                 max(deadline - time.monotonic(), 0.001))
                    show(name, msg)
                    if re.search(pattern, msg):
                        break
            elif kind == "close":
                await conns[name].close()
            else:
                raise SystemExit("unknown step " + step)
        except asyncio.TimeoutError:
            print(name, "timeout", flush=True)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            print(name, "closed", code, e.rcvd.reason if e.rcvd else "", flush=True)
    for conn in conns.values():
        try:
            await asyncio.wait_for(conn.close(), 2)
        except (asyncio.TimeoutError, websockets.WebSocketException, OSError):
            pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
