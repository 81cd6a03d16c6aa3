// otlp_sdk.js -- send log records to logagg's OTLP door with the
// OpenTelemetry JS SDK (@opentelemetry/sdk-logs, BatchLogRecordProcessor)
// and its OTLP/HTTP exporter, protobuf or JSON, and write what the SDK was
// given as the expectation of every mapped field.
//
// usage: node otlp_sdk.js URL TOKEN COUNT EXPECT_FILE proto|json
// URL is the ingest port (http://127.0.0.1:PORT).  EXPECT_FILE gets a JSON
// array with one object per record: message, ts (RFC 3339, µs), level,
// status, trace_id, span_id, attrs.  Exits non-zero if an export failed.
'use strict';
const fs = require('fs');
const api = require('@opentelemetry/api');
const { LoggerProvider, BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const [url, token, countArg, expectFile, encoding] = process.argv.slice(2);
const count = parseInt(countArg, 10);
const { OTLPLogExporter } = require(encoding === 'json' ?
  '@opentelemetry/exporter-logs-otlp-http' : '@opentelemetry/exporter-logs-otlp-proto');
const hex = (n, width) => n.toString(16).padStart(width, '0').slice(-width);
const levels = [['TRACE', 1, 'trace'], ['DEBUG', 5, 'debug'], ['INFO', 9, 'info'],
  ['WARN', 13, 'warn'], ['ERROR', 17, 'error'], ['FATAL', 21, 'fatal']];

// microseconds since the epoch -> RFC 3339 with six fraction digits
function rfc3339(us) {
  const d = new Date(Math.floor(us / 1000));
  return d.toISOString().replace(/\.\d{3}Z$/, '.' + String(us % 1000000).padStart(6, '0') + 'Z');
}

let failed = 0;
const exporter = new OTLPLogExporter({ url: `${url}/v1/logs`, headers: { Authorization: `Bearer ${token}` } });
const realExport = exporter.export.bind(exporter);
exporter.export = (logs, done) => realExport(logs, (res) => {
  if (res.code !== 0) { failed += logs.length; console.error('export failed', res.error && res.error.message); }
  done(res);
});
const resourceAttrs = { 'service.name': `svc-otel-${encoding}`, 'deployment.environment': 'test', 'host.cores': 2 };
const provider = new LoggerProvider({
  resource: resourceFromAttributes(resourceAttrs),
  processors: [new BatchLogRecordProcessor(
    { exporter, maxExportBatchSize: 500, maxQueueSize: count + 1, scheduledDelayMillis: 100 })],
});
const logger = provider.getLogger('otlp-test', '1.2.3');

const base = (Date.now() - 600000) * 1000;  // ten minutes ago, in µs
const expect = [];
for (let i = 0; i < count; i++) {
  const us = base + i * 1237 + (i % 1000);
  const ns = i % 3;                            // below the microsecond: dropped
  const [text, number, level] = levels[i % levels.length];
  const attrs = { 'http.method': i % 2 ? 'GET' : 'POST', n: i, ratio: (i % 8) / 4, ok: i % 3 === 0,
    user: { id: i % 17, roles: ['a', `r${i % 4}`] } };
  let status = null;
  if (i % 4 === 0) { attrs['http.response.status_code'] = 200 + (i % 400); status = 200 + (i % 400); }
  else if (i % 4 === 1) { attrs['http.status_code'] = 500 + (i % 99); status = 500 + (i % 99); }
  const kv = i % 5 === 0;
  const body = kv ? { event: `otlp kv ${encoding} ${i}`, n: i, nested: { a: [1, 2.5, 'x'] } } :
    `otlp ${encoding} record ${i} ` + (i % 7 === 0 ? 'with "quotes" and \\ and ünïcödé' : 'plain');
  const traceId = hex(0xabc000 + i, 32);
  const spanId = hex(0xdef000 + i, 16);
  const ctx = api.trace.setSpanContext(api.context.active(),
    { traceId, spanId, traceFlags: api.TraceFlags.SAMPLED });
  const rec = { timestamp: [Math.floor(us / 1e6), (us % 1e6) * 1000 + ns], body, attributes: attrs, context: ctx };
  // a third without severity text: the level comes from the number
  rec.severityNumber = number;
  if (i % 3 !== 2) rec.severityText = i % 2 ? text : text.toLowerCase();
  logger.emit(rec);

  const ownAttrs = { ...attrs };
  delete ownAttrs[i % 4 === 0 ? 'http.response.status_code' : 'http.status_code'];
  expect.push({ message: kv ? JSON.stringify(body) : body, ts: rfc3339(us), level, status,
    trace_id: traceId, span_id: spanId,
    attrs: { ...resourceAttrs, 'otel.scope.name': 'otlp-test', 'otel.scope.version': '1.2.3', ...ownAttrs } });
}
fs.writeFileSync(expectFile, JSON.stringify(expect));

(async () => {
  await provider.forceFlush();
  await provider.shutdown();
  process.stdout.write(JSON.stringify({ sent: count, failed }) + '\n');
  process.exit(failed === 0 ? 0 : 1);
})().catch((e) => { console.error(e); process.exit(2); });
