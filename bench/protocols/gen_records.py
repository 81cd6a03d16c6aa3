#!/usr/bin/env python3
"""gen_records.py -- deterministic "typical shipper" records for bench/protocols.

    gen_records.py N [SEED] [BASE_EPOCH] > records.ndjson

Writes N native records, one JSON object per line:
  ts (RFC 3339, UTC, microseconds), source, level, status, message,
  trace_id (32 hex), span_id (16 hex), attrs (a nested object: http,
  k8s with labels, host, user with an array of roles, tags, numbers,
  booleans, a null; about 640 bytes per record).

The same N, SEED and BASE_EPOCH give the same bytes.  BASE_EPOCH (default:
the start of the current hour, minus one hour) is the first record's time;
records are 1 ms apart, so that they stay inside logagg.max_ts_past.
The body generators in bodies/ turn this file into each protocol's
request bodies.
"""
import json
import random
import sys
import time
from datetime import datetime, timezone

SERVICES = ["checkout", "payments", "catalog", "auth", "search", "cart"]
ROUTES = ["/api/orders/{id}", "/api/products/{id}", "/api/cart", "/api/search",
          "/api/users/{id}", "/api/payments/{id}/capture"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0",
          "okhttp/4.12.0", "curl/8.5.0", "Go-http-client/1.1"]
TEAMS = ["team-a", "team-b", "team-c"]


def status_of(r):
    x = r.random()
    if x < 0.90:
        return 200
    if x < 0.94:
        return 404
    if x < 0.97:
        return r.choice([400, 401, 403, 409])
    return r.choice([500, 502, 503, 504])


def main():
    n = int(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    base = float(sys.argv[3]) if len(sys.argv) > 3 else (int(time.time()) // 3600 - 1) * 3600
    r = random.Random(seed)
    out = sys.stdout
    for i in range(n):
        svc = r.choice(SERVICES)
        status = status_of(r)
        level = "error" if status >= 500 else "warn" if status >= 400 else "info"
        method = r.choice(METHODS)
        route = r.choice(ROUTES)
        oid = r.randrange(1, 10**7)
        path = route.replace("{id}", str(oid))
        dur = round(r.expovariate(1 / 35.0), 3)
        ts = datetime.fromtimestamp(base + i / 1000.0, tz=timezone.utc)
        rec = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "source": svc,
            "level": level,
            "status": status,
            "message": f"{method} {path} {status} {dur}ms",
            "trace_id": "%032x" % r.getrandbits(128),
            "span_id": "%016x" % r.getrandbits(64),
            "attrs": {
                "http": {"method": method, "route": route, "path": path,
                         "status_code": status, "user_agent": r.choice(AGENTS),
                         "request_bytes": r.randrange(0, 4096),
                         "response_bytes": r.randrange(100, 200000)},
                "k8s": {"namespace": "prod", "pod": f"{svc}-{r.randrange(16):x}{r.getrandbits(20):05x}",
                        "container": svc, "node": f"node-{r.randrange(1, 9)}",
                        "labels": {"app": svc, "team": r.choice(TEAMS), "tier": "backend"}},
                "host": {"name": f"ip-10-0-{r.randrange(256)}-{r.randrange(256)}",
                         "ip": f"10.0.{r.randrange(256)}.{r.randrange(256)}"},
                "user": {"id": r.randrange(1, 10**6), "roles": r.sample(["admin", "buyer", "seller", "support"], 2)},
                "tags": ["web", r.choice(["eu-west-1", "us-east-1"]), "v2"],
                "duration_ms": dur,
                "retry": r.random() < 0.05,
                "cache": None,
            },
        }
        out.write(json.dumps(rec, separators=(",", ":")))
        out.write("\n")


if __name__ == "__main__":
    main()
