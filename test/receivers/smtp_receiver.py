#!/usr/bin/python3
"""smtp_receiver.py - a real SMTP server (Debian's python3-aiosmtpd) for
logagg's e-mail alert tests.

Listens on 127.0.0.1:PORT and appends one JSON line per accepted message to
OUT: {"t", "mail_from", "rcpt_tos", "data" (the message as text),
"auth_user"}.  With --auth USER:PASS it advertises AUTH PLAIN/LOGIN
(without TLS, loopback only) and accepts only that login.
Run it with /usr/bin/python3, which sees Debian's python3-* packages.
"""
import argparse
import json
import signal
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Recorder:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        user = None
        if session.auth_data is not None:
            ad = session.auth_data
            user = ad.login.decode() if isinstance(getattr(ad, 'login', None), bytes) else str(ad)
        rec = {'t': time.time(), 'mail_from': envelope.mail_from, 'rcpt_tos': envelope.rcpt_tos,
               'data': envelope.content.decode('utf-8', 'replace'), 'auth_user': user}
        self.out.write(json.dumps(rec) + '\n')
        self.out.flush()
        return '250 Message accepted for delivery'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--auth', help='USER:PASS required to send')
    ap.add_argument('--ready-file')
    args = ap.parse_args()
    out = open(args.out, 'a', buffering=1)
    kw = {}
    if args.auth:
        want_user, _, want_pass = args.auth.partition(':')

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (auth_data.login.decode() == want_user and auth_data.password.decode() == want_pass)
            return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode())
        kw = dict(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    ctl = Controller(Recorder(out), hostname='127.0.0.1', port=args.port, **kw)
    ctl.start()
    if args.ready_file:
        with open(args.ready_file, 'w') as f:
            f.write('ready\n')
    print('smtp_receiver listening on 127.0.0.1:%d' % args.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    ctl.stop()


if __name__ == '__main__':
    main()
