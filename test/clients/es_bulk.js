// es_bulk.js -- send documents to logagg's Elasticsearch door with the
// official client (@elastic/elasticsearch) and its bulk helper, and write
// what it was given as the expectation of every mapped field.
//
// usage: node es_bulk.js URL TOKEN COUNT EXPECT_FILE
// URL is the ingest port (http://127.0.0.1:PORT); the token goes as the
// password of HTTP Basic, as Beats and Logstash send it.  EXPECT_FILE gets
// a JSON array with one object per document: message, ts (RFC 3339, µs),
// level, status, trace_id, span_id, attrs.  Prints the bulk
// helper's stats as JSON on stdout; exits non-zero if a document failed.
'use strict';
const fs = require('fs');
const { Client } = require('@elastic/elasticsearch');

const [url, token, countArg, expectFile] = process.argv.slice(2);
const count = parseInt(countArg, 10);
const levels = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const hex = (n, width) => n.toString(16).padStart(width, '0').slice(-width);

// microseconds since the epoch -> RFC 3339 with six fraction digits
function rfc3339(us) {
  const d = new Date(Math.floor(us / 1000));
  return d.toISOString().replace(/\.\d{3}Z$/, '.' + String(us % 1000000).padStart(6, '0') + 'Z');
}

const base = (Date.now() - 600000) * 1000;    // ten minutes ago, in µs
const docs = [];
const expect = [];
for (let i = 0; i < count; i++) {
  const ts = rfc3339(base + i * 1237 + (i % 1000));
  const doc = {
    '@timestamp': ts,
    message: `es doc ${i} ` + (i % 7 === 0 ? 'with "quotes" and \\ and ünïcödé' : 'plain'),
    'log.level': levels[i % levels.length],
    'http.response.status_code': 200 + (i % 400),
    'trace.id': hex(0xabc000 + i, 32),
    'span.id': hex(0xdef000 + i, 16),
    'service.name': `svc-${i % 5}`,
    host: { name: `host-${i % 3}`, ip: ['10.0.0.1', '10.0.0.2'] },
    labels: { n: i, even: i % 2 === 0 },
  };
  const attrs = { 'service.name': doc['service.name'], host: doc.host, labels: doc.labels };
  docs.push(doc);
  expect.push({ message: doc.message, ts, level: doc['log.level'],
                status: doc['http.response.status_code'], trace_id: doc['trace.id'],
                span_id: doc['span.id'], attrs });
}
fs.writeFileSync(expectFile, JSON.stringify(expect));

async function main() {
  const client = new Client({ node: url, auth: { username: 'beats', password: token } });
  const failed = [];
  const stats = await client.helpers.bulk({
    datasource: docs,
    onDocument() { return { index: { _index: 'logs-app' } }; },
    onDrop(doc) { failed.push(doc); },
    flushBytes: 256 * 1024,
    retries: 0,
  });
  process.stdout.write(JSON.stringify({ stats, failed: failed.length }) + '\n');
  await client.close();
  process.exit(failed.length === 0 && stats.successful === count ? 0 : 1);
}
main().catch((e) => { console.error(e); process.exit(2); });
