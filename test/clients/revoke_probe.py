#!/usr/bin/python3
"""revoke_probe.py -- what a connection sees when its token is revoked.

    revoke_probe.py URL TOKEN MODE

Opens URL (a stream: ?stream=...) with TOKEN, sends seq 1 and waits for
its ack, then prints "ready" and waits for a line on stdin: the test
revokes the token and then writes that line.  From then on, MODE "send"
sends seq 2, 3, ... one frame every 20 ms; MODE "idle" sends nothing.
Ends when the server closes the connection, or after 5 s, and prints
    closed SECONDS LAST_SEQ_SENT | open SECONDS LAST_SEQ_SENT
SECONDS counting from the stdin line.
"""
import asyncio
import json
import sys
import time

import websockets


async def main(url, token, mode):
    ws = await websockets.connect(url, extra_headers={"Authorization": "Bearer " + token},
                                  open_timeout=5)
    json.loads(await ws.recv())                      # {"resume": N}
    await ws.send(json.dumps({"seq": 1, "message": "before the revoke"}))
    while "ack" not in json.loads((await ws.recv()).split("\n")[-1]):
        pass
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0 = time.monotonic()
    seq = 1
    try:
        while time.monotonic() - t0 < 5:
            if mode == "send":
                seq += 1
                await ws.send(json.dumps({"seq": seq, "message": "after the revoke"}))
            try:
                await asyncio.wait_for(ws.recv(), 0.02)
            except asyncio.TimeoutError:
                pass
    except websockets.ConnectionClosed:
        print("closed %.3f %d" % (time.monotonic() - t0, seq), flush=True)
        return
    print("open %.3f %d" % (time.monotonic() - t0, seq), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
