#!/usr/bin/python3
"""ws_probe.py -- a scripted WebSocket client for logagg's TAP tests.

    ws_probe.py BASE_URL STEP...

BASE_URL is ws://HOST:PORT.  Each STEP is one of
    open:NAME:PATH[:TOKEN]  connect NAME to BASE_URL+PATH (TOKEN as a Bearer header)
    upgrade:NAME:PATH[:TOKEN]  raw upgrade request; prints the HTTP status only
                            (for refusals: lws answers them as HTTP/1.0, which
                            the websockets library does not accept)
    send:NAME:TEXT          send TEXT as one text frame (\\n in TEXT is a newline)
    big:NAME:BYTES          send one frame of BYTES bytes
    bytes:NAME:HEX          send the bytes HEX as one binary frame
    file:NAME:PATH          send the bytes of file PATH as one binary frame
    recv:NAME[:SECONDS]     wait for one message (default 5 s)
    until:NAME:SECONDS:REGEX  receive (and print) messages until one matches
                            REGEX, for at most SECONDS in all
    close:NAME              close NAME normally
    sleep:SECONDS

Every outcome is printed as one line, so a test can match it:
    NAME recv MESSAGE | NAME closed CODE REASON | NAME status HTTP_STATUS |
    NAME timeout
Uses Debian's python3-websockets (run with /usr/bin/python3).
"""
import asyncio
import re
import sys

import websockets


async def main(base, steps):
    conns = {}
    for step in steps:
        kind, _, rest = step.partition(":")
        if kind == "sleep":
            await asyncio.sleep(float(rest))
            continue
        name, _, arg = rest.partition(":")
        try:
            if kind == "open":
                path, _, token = arg.partition(":")
                headers = {"Authorization": "Bearer " + token} if token else {}
                try:
                    conns[name] = await websockets.connect(
                        base + path, extra_headers=headers, max_size=None,
                        open_timeout=5)
                    print(name, "open", flush=True)
                except websockets.InvalidStatusCode as e:
                    print(name, "status", e.status_code, flush=True)
                except websockets.InvalidHandshake as e:
                    print(name, "status", "invalid", e, flush=True)
            elif kind == "upgrade":
                path, _, token = arg.partition(":")
                host, port = base.split("//", 1)[1].rsplit(":", 1)
                reader, writer = await asyncio.open_connection(host, int(port))
                req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" % (path, host))
                if token:
                    req += "Authorization: Bearer %s\r\n" % token
                writer.write((req + "\r\n").encode())
                line = await asyncio.wait_for(reader.readline(), 5)
                parts = line.decode(errors="replace").split()
                print(name, "status", parts[1] if len(parts) > 1 else "none", flush=True)
                writer.close()
            elif kind == "send":
                await conns[name].send(arg.replace("\\n", "\n"))
            elif kind == "bytes":
                await conns[name].send(bytes.fromhex(arg))
            elif kind == "file":
                with open(arg, "rb") as f:
                    await conns[name].send(f.read())
            elif kind == "big":
                await conns[name].send("x" * int(arg))
            elif kind == "recv":
                timeout = float(arg) if arg else 5.0
                msg = await asyncio.wait_for(conns[name].recv(), timeout)
                print(name, "recv", msg.replace("\n", " | "), flush=True)
            elif kind == "until":
                secs, _, pattern = arg.partition(":")
                deadline = asyncio.get_running_loop().time() + float(secs)
                while True:
                    left = deadline - asyncio.get_running_loop().time()
                    msg = await asyncio.wait_for(conns[name].recv(), max(left, 0.001))
                    print(name, "recv", msg.replace("\n", " | "), flush=True)
                    if re.search(pattern, msg):
                        break
            elif kind == "close":
                await conns[name].close()
                print(name, "closed-by-client", flush=True)
            else:
                raise SystemExit("unknown step " + step)
        except asyncio.TimeoutError:
            print(name, "timeout", flush=True)
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            reason = e.rcvd.reason if e.rcvd else ""
            print(name, "closed", code, reason, flush=True)
    # Close what is still open: left to interpreter shutdown, each socket
    # would wait for websockets' 10 s close timeout.
    for conn in conns.values():
        try:
            await asyncio.wait_for(conn.close(), 2)
        except (asyncio.TimeoutError, websockets.WebSocketException, OSError):
            pass


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
