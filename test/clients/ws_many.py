#!/usr/bin/python3
"""ws_many.py -- many concurrent WebSocket clients for logagg's TAP tests.

    ws_many.py URL TOKEN CONNECTIONS FRAMES RECORDS_PER_FRAME

Opens CONNECTIONS connections to URL (Bearer TOKEN), all held open at once,
then every connection sends FRAMES frames of RECORDS_PER_FRAME records at
the same moment and waits until the server's {"ack_count": N} messages add
up to what it sent.  Progress goes to stdout, one line per phase:

    opened N failed F SECONDS      every connection tried; N are open
    acked N records R errors E SECONDS   connections fully acked, records acked
    (then it waits for a line on stdin, so the caller can look at the server
     while all connections are still open)
    closed N

Records are {"message": "conn C frame F rec R", "conn": C}.  Uses Debian's
python3-websockets (run with /usr/bin/python3).  Raises its own open-file
soft limit to the hard limit first.
"""
import asyncio
import json
import resource
import sys
import time

import websockets


async def open_one(url, token, i, conns, failures):
    for attempt in range(3):
        try:
            ws = await websockets.connect(
                url, extra_headers={"Authorization": "Bearer " + token},
                open_timeout=30, ping_interval=None, max_size=None,
                close_timeout=2)
            conns[i] = ws
            return
        except Exception as e:  # noqa: BLE001 -- reported below
            err = e
            await asyncio.sleep(0.2 * (attempt + 1))
    failures.append("%d: %r" % (i, err))


async def run_one(i, ws, frames, per_frame, start, result):
    await start.wait()
    expect = frames * per_frame
    for f in range(frames):
        recs = [{"message": "conn %d frame %d rec %d" % (i, f, r), "conn": i}
                for r in range(per_frame)]
        await ws.send(json.dumps(recs))
    acked = 0
    errors = 0
    while acked + errors < expect:
        msg = await asyncio.wait_for(ws.recv(), 60)
        for line in msg.split("\n"):
            obj = json.loads(line)
            if "ack_count" in obj:
                acked += obj["ack_count"]
            elif "error" in obj:
                errors += 1
    result[i] = (acked, errors)


async def main(url, token, n, frames, per_frame):
    conns = {}
    failures = []
    t0 = time.time()
    # open in waves, so the listen backlog never overflows
    for base in range(0, n, 100):
        await asyncio.gather(*(open_one(url, token, i, conns, failures)
                               for i in range(base, min(n, base + 100))))
    print("opened %d failed %d %.2f" % (len(conns), len(failures), time.time() - t0),
          flush=True)
    for f in failures[:5]:
        print("failure", f, file=sys.stderr)

    start = asyncio.Event()
    result = {}
    tasks = [asyncio.create_task(run_one(i, ws, frames, per_frame, start, result))
             for i, ws in conns.items()]
    t1 = time.time()
    start.set()                 # every connection sends at the same moment
    done = await asyncio.gather(*tasks, return_exceptions=True)
    bad = [d for d in done if isinstance(d, Exception)]
    for b in bad[:5]:
        print("client error", repr(b), file=sys.stderr)
    full = sum(1 for a, e in result.values() if a == frames * per_frame)
    print("acked %d records %d errors %d %.2f" % (
        full, sum(a for a, e in result.values()),
        sum(e for a, e in result.values()) + len(bad), time.time() - t1), flush=True)

    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in conns.values()), return_exceptions=True)
    print("closed %d" % len(conns), flush=True)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url, token = sys.argv[1], sys.argv[2]
    asyncio.run(main(url, token, *map(int, sys.argv[3:6])))
