#!/usr/bin/python3
"""tls_probe.py -- one TLS handshake against HOST:PORT with a chosen
protocol version and cipher list; prints "ok VERSION CIPHER" or
"refused REASON".  The certificate is not verified: this only asks which
protocol versions and ciphers the server agrees to.

    tls_probe.py HOST PORT VERSION [TLS1.2-CIPHERS]
    VERSION: TLSv1, TLSv1_1, TLSv1_2 or TLSv1_3

A client must be allowed to offer old versions for the probe to mean
anything: run it with OPENSSL_CONF pointing to a configuration that
permits them (security level 0).
"""
import socket
import ssl
import sys
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)  # TLSv1_1 on purpose

host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ciphers = sys.argv[4] if len(sys.argv) > 4 else None

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
v = getattr(ssl.TLSVersion, version)
ctx.minimum_version = v
ctx.maximum_version = v
ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")

try:
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            print("ok", tls.version(), tls.cipher()[0])
except (ssl.SSLError, OSError) as e:
    print("refused", e)
