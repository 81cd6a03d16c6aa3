#!/usr/bin/python3
"""http_receiver.py - a recording HTTP receiver for logagg's alert tests.

Listens on 127.0.0.1:PORT, answers every request (webhook, Slack,
PagerDuty, Twilio-style SMS) and appends one JSON line per request to OUT:
  {"t": answered-at epoch seconds, "t_recv": received-at, "method", "path",
   "headers": {lower-case name: value}, "body": text, "key": Idempotency-Key,
   "status": status answered, "acted": true when this request was acted on
   (2xx and its Idempotency-Key not seen before), "duplicate": bool}

A second listener on 127.0.0.1:CONTROL_PORT takes commands (GET or POST):
  /fail?n=N&status=500       answer the next N requests with STATUS
  /answer?n=N&status=S&body_hex=HEX&repeat=K&retry_after=V
                             answer the next N with STATUS, the body bytes
                             HEX repeated K times, and Retry-After: V (sent
                             verbatim) when given
  /clock?offset=S            shift this receiver's clock by S seconds (to
                             check signatures as if the request came later)
  /ratelimit?n=N&retry_after=S   answer the next N with 429 + Retry-After: S
  /slow?ms=MS                delay every answer by MS (0 = off)
  /pause   /resume           hold answers until resumed
  /refuse  /accept           close the listener (connections refused) / listen again
  /reset                     clear every mode
  /stats                     JSON: requests, acted, duplicates, modes
With --verify-secret SECRET every request is checked as docs/alerts.md
tells receivers to: X-Logagg-Signature must be v2=hex(HMAC-SHA256(SECRET,
X-Logagg-Timestamp + "." + body)) and the timestamp within --max-skew
seconds (default 300) of now; otherwise it is answered 401 and recorded
with "verified": false and "verify_error".
Standard library only (asyncio); loopback only.
"""
import hashlib
import hmac
import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit, parse_qs


class State:
    def __init__(self):
        self.fail_n = 0
        self.fail_status = 500
        self.answer_n = 0
        self.answer = None         # (status, body bytes, retry_after or None)
        self.clock_offset = 0.0
        self.rl_n = 0
        self.rl_after = 1
        self.slow_ms = 0
        self.paused = asyncio.Event()
        self.paused.set()          # set = not paused
        self.refusing = False
        self.acted = set()
        self.requests = 0
        self.duplicates = 0
        self.server = None
        self.writers = set()


async def read_request(reader):
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode('latin-1').strip().split(' ')
    if len(parts) < 2:
        return None
    method, target = parts[0], parts[1]
    headers = {}
    while True:
        h = await reader.readline()
        if not h or h in (b'\r\n', b'\n'):
            break
        name, _, value = h.decode('latin-1').partition(':')
        headers[name.strip().lower()] = value.strip()
    body = b''
    n = int(headers.get('content-length', '0') or 0)
    if n:
        body = await reader.readexactly(n)
    return method, target, headers, body


def response(status, body, extra=None, close=False):
    reason = {200: 'OK', 201: 'Created', 202: 'Accepted', 401: 'Unauthorized',
              429: 'Too Many Requests', 500: 'Internal Server Error',
              503: 'Service Unavailable'}.get(status, 'Status')
    b = body if isinstance(body, bytes) else body.encode()
    head = 'HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n' % (status, reason, len(b))
    for k, v in (extra or {}).items():
        head += '%s: %s\r\n' % (k, v)
    if close:
        head += 'Connection: close\r\n'
    return head.encode() + b'\r\n' + b


def verify(secret, max_skew, now, headers, body):
    """None if the signature and timestamp check out, else the reason."""
    ts = headers.get('x-logagg-timestamp', '')
    sig = headers.get('x-logagg-signature', '')
    if not ts.isdigit():
        return 'missing or malformed X-Logagg-Timestamp'
    if not sig.startswith('v2='):
        return 'missing or not a v2 signature'
    want = hmac.new(secret.encode(), ts.encode() + b'.' + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig[3:], want):
        return 'bad signature'
    if abs(now - int(ts)) > max_skew:
        return 'timestamp too old or in the future'
    return None


def make_data_handler(st, out, args):
    async def handle(reader, writer):
        st.writers.add(writer)
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                method, target, headers, body = req
                t_recv = time.time()
                st.requests += 1
                await st.paused.wait()
                if st.slow_ms:
                    await asyncio.sleep(st.slow_ms / 1000.0)
                if st.refusing:
                    break
                extra = {}
                key = headers.get('idempotency-key')
                verify_error = None
                if args.verify_secret is not None:
                    verify_error = verify(args.verify_secret, args.max_skew,
                                          time.time() + st.clock_offset, headers, body)
                if verify_error is not None:
                    status, rbody = 401, json.dumps({'error': verify_error})
                elif st.answer_n > 0:
                    st.answer_n -= 1
                    status, rbody, ra = st.answer
                    if ra is not None:
                        extra['Retry-After'] = ra
                elif st.fail_n > 0:
                    st.fail_n -= 1
                    status, rbody = st.fail_status, '{"error":"injected failure"}'
                elif st.rl_n > 0:
                    st.rl_n -= 1
                    status, rbody = 429, '{"error":"rate limited"}'
                    extra['Retry-After'] = str(st.rl_after)
                else:
                    status, rbody = (201 if '/Messages.json' in target else 200), '{"ok":true}'
                acted = False
                dup = False
                if 200 <= status < 300:
                    if key is not None and key in st.acted:
                        dup = True
                        st.duplicates += 1
                    else:
                        acted = True
                        if key is not None:
                            st.acted.add(key)
                rec = {'t': time.time(), 't_recv': t_recv, 'method': method, 'path': target,
                       'headers': headers, 'body': body.decode('utf-8', 'replace'),
                       'key': key, 'status': status, 'acted': acted, 'duplicate': dup}
                if args.verify_secret is not None:
                    rec['verified'] = verify_error is None
                    rec['verify_error'] = verify_error
                out.write(json.dumps(rec) + '\n')
                out.flush()
                writer.write(response(status, rbody, extra))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            st.writers.discard(writer)
            writer.close()
    return handle


async def start_listener(st, args, out):
    st.server = await asyncio.start_server(make_data_handler(st, out, args), '127.0.0.1', args.port,
                                           reuse_address=True, backlog=1024)


def make_control_handler(st, args, out):
    async def handle(reader, writer):
        try:
            req = await read_request(reader)
            if req is None:
                return
            _, target, _, _ = req
            u = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            cmd = u.path.strip('/')
            if cmd == 'fail':
                st.fail_n = int(q.get('n', 1))
                st.fail_status = int(q.get('status', 500))
            elif cmd == 'answer':
                st.answer_n = int(q.get('n', 1))
                st.answer = (int(q.get('status', 200)),
                             bytes.fromhex(q.get('body_hex', '')) * int(q.get('repeat', 1)),
                             q.get('retry_after'))
            elif cmd == 'clock':
                st.clock_offset = float(q.get('offset', 0))
            elif cmd == 'ratelimit':
                st.rl_n = int(q.get('n', 1))
                st.rl_after = q.get('retry_after', '1')
            elif cmd == 'slow':
                st.slow_ms = int(q.get('ms', 1000))
            elif cmd == 'pause':
                st.paused.clear()
            elif cmd == 'resume':
                st.paused.set()
            elif cmd == 'refuse':
                if not st.refusing:
                    st.refusing = True
                    st.server.close()
                    await st.server.wait_closed()
                    for w in list(st.writers):
                        w.close()
            elif cmd == 'accept':
                if st.refusing:
                    st.refusing = False
                    await start_listener(st, args, out)
            elif cmd == 'reset':
                st.fail_n = st.rl_n = st.slow_ms = st.answer_n = 0
                st.clock_offset = 0.0
                st.paused.set()
                if st.refusing:
                    st.refusing = False
                    await start_listener(st, args, out)
            elif cmd != 'stats':
                writer.write(response(404, '{"error":"unknown command"}', close=True))
                return
            stats = {'requests': st.requests, 'acted': len(st.acted), 'duplicates': st.duplicates,
                     'fail_n': st.fail_n, 'ratelimit_n': st.rl_n, 'answer_n': st.answer_n, 'slow_ms': st.slow_ms,
                     'paused': not st.paused.is_set(), 'refusing': st.refusing}
            writer.write(response(200, json.dumps(stats), close=True))
            await writer.drain()
        finally:
            writer.close()
    return handle


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--control-port', type=int, required=True)
    ap.add_argument('--out', required=True, help='JSON-lines file of received requests')
    ap.add_argument('--ready-file', help='written once both listeners are up')
    ap.add_argument('--verify-secret', help='check every request\'s v2 signature with this secret')
    ap.add_argument('--max-skew', type=int, default=300, help='seconds a signed timestamp may be off')
    args = ap.parse_args()
    st = State()
    out = open(args.out, 'a', buffering=1)
    await start_listener(st, args, out)
    ctl = await asyncio.start_server(make_control_handler(st, args, out), '127.0.0.1', args.control_port,
                                     reuse_address=True)
    if args.ready_file:
        with open(args.ready_file, 'w') as f:
            f.write('ready\n')
    print('http_receiver listening on 127.0.0.1:%d (control %d)' % (args.port, args.control_port), flush=True)
    async with ctl:
        await ctl.serve_forever()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
