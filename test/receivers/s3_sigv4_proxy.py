#!/usr/bin/python3
"""s3_sigv4_proxy.py -- a SigV4-verifying HTTP front for an S3 test server.

Used by logagg's cloud-sync tests (test/t/3xx).  s3rver does not reliably
check request signatures, so this proxy sits in front of it and verifies
every request independently, from AWS's published algorithm
(https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html
and the S3 "Authenticating Requests (AWS Signature Version 4)" pages):

  1. canonical request = METHOD \n canonical URI \n canonical query string \n
     canonical headers \n signed headers \n hashed payload
     - canonical URI: the path, each byte not in RFC 3986 "unreserved" nor
       "/" percent-encoded with upper-case hex (S3 does not double-encode).
       The path the client sent must already BE that canonical form, so a
       client that forgets to encode a key is refused too.
     - canonical query: name=value pairs, both URI-encoded, sorted by name
       then value; a parameter without value gets "name=".
     - canonical headers: lower-case name ":" trimmed value with inner runs
       of spaces collapsed, "\n" after each, sorted by name.
     - hashed payload: the x-amz-content-sha256 header, which must be
       present and signed; unless it is UNSIGNED-PAYLOAD it must equal the
       SHA-256 of the body actually received.
  2. string to sign = "AWS4-HMAC-SHA256" \n x-amz-date \n scope \n
     hex(SHA-256(canonical request))
  3. signing key = HMAC chain over "AWS4"+secret, date, region, service,
     "aws4_request"; signature = hex(HMAC(key, string to sign)).

Requests that pass are forwarded unchanged to the upstream S3 server (or
answered here with a fault, see --mode-file); requests that fail get
403 SignatureDoesNotMatch and are never forwarded.  Every request is
logged to --log as "PASS|FAIL METHOD PATH [reason]".

--mode-file FILE: read on every request; "ok" (default) forwards,
"500" answers 500 InternalError, "500-parts" answers 500 to UploadPart
requests only (to exercise AbortMultipartUpload), "500-garbage" answers
500 with a Message of invalid UTF-8 and a multibyte text longer than any
buffer it lands in, "hang" waits 60 s
(for client timeouts), "refuse" closes the connection without a reply.

Usage: s3_sigv4_proxy.py --port P --upstream 127.0.0.1:Q --access-key K
       --secret-key S [--region R] [--log FILE] [--mode-file FILE]
Loopback only: it binds 127.0.0.1.
"""
import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import re
import socketserver
import sys
import threading
import time
import urllib.parse

UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def uri_encode(data: bytes, keep_slash: bool) -> str:
    out = []
    for b in data:
        if b in UNRESERVED or (keep_slash and b == ord("/")):
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def canonical_query(raw_query: str) -> str:
    if raw_query == "":
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if item == "":
            continue
        name, _, value = item.partition("=")
        n = uri_encode(urllib.parse.unquote_to_bytes(name), False)
        v = uri_encode(urllib.parse.unquote_to_bytes(value), False)
        pairs.append((n, v))
    pairs.sort()
    return "&".join("%s=%s" % p for p in pairs)


def hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$")


def verify(method, raw_path, headers, body, access_key, secret_key, region):
    """Return None when the request is correctly signed, else the reason."""
    auth = headers.get("authorization")
    if auth is None:
        return "no Authorization header"
    m = AUTH_RE.match(auth.strip())
    if not m:
        return "malformed Authorization header"
    akid, date, req_region, service, signed_headers, signature = m.groups()
    if akid != access_key:
        return "unknown access key"
    if req_region != region:
        return "wrong region %s" % req_region
    if service != "s3":
        return "wrong service %s" % service
    amz_date = headers.get("x-amz-date")
    if amz_date is None or not amz_date.startswith(date):
        return "x-amz-date missing or not matching the credential scope"
    try:
        t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return "bad x-amz-date"
    if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900:
        return "request time too skewed"
    names = signed_headers.split(";")
    if names != sorted(names):
        return "SignedHeaders not sorted"
    for required in ("host", "x-amz-date", "x-amz-content-sha256"):
        if required not in names:
            return "%s not signed" % required
    payload_hash = headers.get("x-amz-content-sha256")
    if payload_hash is None:
        return "x-amz-content-sha256 missing"
    if payload_hash != "UNSIGNED-PAYLOAD":
        if payload_hash != hashlib.sha256(body).hexdigest():
            return "x-amz-content-sha256 does not match the body"
    path, _, query = raw_path.partition("?")
    canon_uri = uri_encode(urllib.parse.unquote_to_bytes(path), True)
    if canon_uri != path:
        return "path is not canonically percent-encoded (%s vs %s)" % (path, canon_uri)
    canon_headers = ""
    for n in names:
        v = headers.get(n)
        if v is None:
            return "signed header %s absent" % n
        canon_headers += "%s:%s\n" % (n, " ".join(v.strip().split()))
    creq = "\n".join([method, canon_uri, canonical_query(query), canon_headers,
                      signed_headers, payload_hash])
    scope = "%s/%s/%s/aws4_request" % (date, req_region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    k = hmac_sha256(("AWS4" + secret_key).encode("utf-8"), date)
    k = hmac_sha256(k, req_region)
    k = hmac_sha256(k, service)
    k = hmac_sha256(k, "aws4_request")
    expected = hmac.new(k, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "signature mismatch"
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def record(self, line):
        with self.server.log_lock:
            with open(self.server.opts.log, "a") as f:
                f.write(line + "\n")

    def mode(self):
        if not self.server.opts.mode_file:
            return "ok"
        try:
            with open(self.server.opts.mode_file) as f:
                return f.read().strip() or "ok"
        except OSError:
            return "ok"

    def reply(self, code, body, ctype="application/xml"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        o = self.server.opts
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.record("FAIL %s %s chunked bodies are not accepted" % (self.command, self.path))
            self.reply(411, b"<Error><Code>MissingContentLength</Code></Error>")
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reason = verify(self.command, self.path, headers, body,
                        o.access_key, o.secret_key, o.region)
        if reason is not None:
            self.record("FAIL %s %s %s" % (self.command, self.path, reason))
            self.reply(403, ("<Error><Code>SignatureDoesNotMatch</Code><Message>%s</Message></Error>"
                             % reason).encode())
            return
        mode = self.mode()
        self.record("PASS %s %s %d %s" % (self.command, self.path, len(body), mode))
        if mode == "500" or (mode == "500-parts" and "partNumber=" in self.path):
            self.reply(500, b"<Error><Code>InternalError</Code></Error>")
            return
        if mode == "500-garbage":
            msg = b"\xff\xfebad " + "\u00e9".encode() * 400
            self.reply(500, b"<Error><Code>InternalError</Code><Message>" + msg + b"</Message></Error>")
            return
        if mode == "hang":
            time.sleep(60)
            self.close_connection = True
            return
        if mode == "refuse":
            self.close_connection = True
            return
        host, _, port = o.upstream.partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        fwd = {k: v for k, v in self.headers.items()
               if k.lower() not in ("connection", "expect", "transfer-encoding", "keep-alive")}
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in fwd.items():
            conn.putheader(k, v)
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("connection", "transfer-encoding", "keep-alive", "content-length", "date", "server"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--log", default="/dev/null")
    p.add_argument("--mode-file")
    opts = p.parse_args()
    srv = Server(("127.0.0.1", opts.port), Handler)
    srv.opts = opts
    srv.log_lock = threading.Lock()
    print("s3_sigv4_proxy listening on 127.0.0.1:%d" % opts.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
