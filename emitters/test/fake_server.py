#!/usr/bin/python3
"""fake_server.py -- loopback stand-in for the logagg ingest worker.

Implements the server side of wire protocol v1 (docs/protocol.md) well
enough to test logagg-emit without PostgreSQL:

  * token check before the upgrade (Authorization: Bearer, or ?token=),
    HTTP 401 when wrong
  * ?stream=ID: sends {"resume": LAST_COMMITTED_SEQ} first, drops records
    whose seq <= the committed seq as duplicates, a new connection for a
    stream takes it over (the old one is closed)
  * "commits" pending records every --ack-delay ms, then acks:
    {"ack": HIGHEST_SEQ} for records with seq, {"ack_count": N} (N = records
    stored since the previous ack_count) for records without seq; invalid
    records (no string "message") get {"error": "...", "seq": SEQ} and are
    not part of ack_count
  * --drop-after N closes a connection after it received N records, at most
    --max-drops times; every other drop first commits the pending records
    without acking them (as if the ack was lost), the others discard them
    (as if the server died before COMMIT)

Uses Debian's python3-websockets (10.x, legacy asyncio server API): run it
with /usr/bin/python3.  On SIGTERM/SIGINT it writes a JSON report to
--report (default stdout) and exits.
"""

import argparse
import asyncio
import http
import json
import re
import signal
import sys
from urllib.parse import parse_qs, urlsplit

import websockets


class Store:
    def __init__(self):
        self.stored = 0            # records committed (accepted)
        self.rejected = 0          # records committed to "rejected"
        self.dups = 0              # seq <= committed, dropped
        self.connections = 0
        self.refused = 0           # bad token
        self.drops = 0
        self.frames = 0
        self.committed = {}        # stream -> last committed seq
        self.seqs = {}             # stream -> {seq: times stored}
        self.active = {}           # stream -> websocket owning it
        self.dump = []             # stored records, when --dump


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here")
    ap.add_argument("--token", help="required bearer token (default: none)")
    ap.add_argument("--ack-delay", type=float, default=5.0, help="ms between commits")
    ap.add_argument("--drop-after", type=int, default=0)
    ap.add_argument("--max-drops", type=int, default=5)
    ap.add_argument("--max-size", type=int, default=1 << 20)
    ap.add_argument("--report", help="write the final report here (default stdout)")
    ap.add_argument("--dump", help="write stored records here as NDJSON")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--tls-cert", help="serve wss:// with this certificate")
    ap.add_argument("--tls-key")
    ap.add_argument("--fast", action="store_true",
                    help="benchmark mode: count records without parsing JSON "
                    "(one '{' per record: only valid for profile records)")
    return ap.parse_args()


ARGS = parse_args()
LAST_SEQ = re.compile(r'"seq":(\d+)(?!.*"seq":)', re.S)
STORE = Store()


def log(*a):
    if ARGS.verbose:
        print("fake_server:", *a, file=sys.stderr, flush=True)


def query_of(path):
    return parse_qs(urlsplit(path).query)


def process_request(path, headers):
    """Token check before the upgrade, like the real server."""
    if ARGS.token is None:
        return None
    auth = headers.get("Authorization", "")
    q = query_of(path)
    if auth == "Bearer " + ARGS.token or q.get("token", [None])[0] == ARGS.token:
        return None
    STORE.refused += 1
    return (http.HTTPStatus.UNAUTHORIZED, [("Content-Type", "text/plain")],
            b"bad or missing token\n")


def records_of(text):
    """A frame holds one object, an array of objects, or NDJSON."""
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except ValueError:
        out = []
        for line in text.splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append(None)
        return out


async def handler(ws, path=None):
    path = ws.path
    stream = query_of(path).get("stream", [None])[0]
    STORE.connections += 1
    pending = []                 # (kind, seq, record); kind: ok | bad
    received = 0
    closing = False

    if stream is not None:
        old = STORE.active.get(stream)
        STORE.active[stream] = ws
        if old is not None and old.open:
            await old.close(code=4000, reason="stream taken over")
        STORE.committed.setdefault(stream, 0)
        STORE.seqs.setdefault(stream, {})
        await ws.send(json.dumps({"resume": STORE.committed[stream]}))
        log("connection", STORE.connections, "stream", stream, "resume",
            STORE.committed[stream])

    def commit():
        """Store pending records; return the messages to send after it."""
        nonlocal pending
        msgs = []
        count = 0
        top = None
        for kind, seq, rec in pending:
            if stream is not None and isinstance(seq, int):
                if seq <= STORE.committed[stream]:
                    STORE.dups += 1
                    continue
                STORE.committed[stream] = seq
                top = seq
            if kind == "bad":
                STORE.rejected += 1
                msgs.append({"error": "record has no message", "seq": seq})
                continue
            STORE.stored += 1
            if ARGS.dump:
                STORE.dump.append(rec)
            if stream is not None and isinstance(seq, int):
                d = STORE.seqs[stream]
                d[seq] = d.get(seq, 0) + 1
            else:
                count += 1
        pending = []
        if top is not None:
            msgs.append({"ack": top})
        if count:
            msgs.append({"ack_count": count})
        return msgs

    async def flusher():
        while True:
            await asyncio.sleep(ARGS.ack_delay / 1000.0)
            if pending and not closing:
                for m in commit():
                    await ws.send(json.dumps(m))

    task = asyncio.ensure_future(flusher())
    try:
        async for msg in ws:
            STORE.frames += 1
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            if ARGS.fast:
                n = msg.count("{")
                m = LAST_SEQ.search(msg, max(0, len(msg) - 1200)) if stream else None
                seq = int(m.group(1)) if m else None
                pending.extend([("ok", None, None)] * (n - 1))
                pending.append(("ok", seq, None))
                received += n
                continue
            for rec in records_of(msg):
                seq = rec.get("seq") if isinstance(rec, dict) else None
                ok = isinstance(rec, dict) and isinstance(rec.get("message"), str)
                pending.append(("ok" if ok else "bad", seq, rec))
                received += 1
            if (ARGS.drop_after and received >= ARGS.drop_after
                    and STORE.drops < ARGS.max_drops):
                STORE.drops += 1
                closing = True
                if STORE.drops % 2 == 1:
                    commit()          # committed, but the acks are lost
                else:
                    pending = []      # "crashed" before COMMIT
                ws.transport.abort()
                break
    except websockets.ConnectionClosed:
        pass
    finally:
        task.cancel()
        if stream is not None and STORE.active.get(stream) is ws:
            del STORE.active[stream]
        # an orderly close after the last frame: commit what arrived
        # (acks can't be sent any more; the client resends or resumes)
        if pending and not closing:
            commit()


def report():
    streams = {}
    for sid, d in STORE.seqs.items():
        streams[sid] = {
            "last_seq": STORE.committed.get(sid, 0),
            "distinct": len(d),
            "stored": sum(d.values()),
            "min": min(d) if d else None,
            "max": max(d) if d else None,
        }
    return {
        "stored": STORE.stored,
        "rejected": STORE.rejected,
        "duplicates_dropped": STORE.dups,
        "connections": STORE.connections,
        "refused": STORE.refused,
        "drops": STORE.drops,
        "frames": STORE.frames,
        "streams": streams,
    }


async def main():
    stop = asyncio.get_running_loop().create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set_result, None)
    ssl_ctx = None
    if ARGS.tls_cert:
        import ssl
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
    async with websockets.serve(handler, ARGS.host, ARGS.port, ssl=ssl_ctx,
                                process_request=process_request,
                                max_size=ARGS.max_size, compression=None,
                                max_queue=64, close_timeout=1) as server:
        port = server.sockets[0].getsockname()[1]
        if ARGS.port_file:
            with open(ARGS.port_file + ".tmp", "w") as f:
                f.write("%d\n" % port)
            import os
            os.rename(ARGS.port_file + ".tmp", ARGS.port_file)
        await stop
    text = json.dumps(report(), indent=1, sort_keys=True)
    if ARGS.report:
        with open(ARGS.report, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    if ARGS.dump:
        with open(ARGS.dump, "w") as f:
            for rec in STORE.dump:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
