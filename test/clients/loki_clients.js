// loki_clients.js -- send records through a real Loki client library to
// logagg's Loki door, and write down what the library was given.
//
//   node loki_clients.js winston|pino URL TOKEN COUNT EXPECT_FILE
//
// winston: the winston-loki transport, in its default mode (protobuf,
// snappy compressed), the token as the HTTP Basic password; it keeps
// timestamps to the millisecond and sends no structured metadata.
// pino: the pino-loki transport (Loki JSON), with timestamps given in
// nanoseconds (microsecond values) and structured metadata (its "meta").
// Each record gets varied known fields: level, labels, a line with quotes,
// backslashes, newlines and non-ASCII, a timestamp.  EXPECT_FILE gets a
// JSON array of what logagg should store for each: message, ts (RFC 3339
// with microseconds), level (logagg's canonical name of the level the
// client was given) and attrs (the labels and metadata the library sends).
// Prints {"sent": N, "failures": F, "content_type": T} and exits non-zero on a failure.
'use strict';

const fs = require('fs');

const [lib, url, token, countArg, expectFile] = process.argv.slice(2);
const count = Number(countArg);
const jobs = ['api', 'worker', 'cron'];
const regions = ['eu-1', 'us-2'];
let failures = 0;
let contentType = null;	// what the library posts with

function message(i) {
  const extra = ['', ' "quoted"', ' back\\slash', ' two\nlines', ' ünïcödé ✓', '\ttabbed'][i % 6];
  return `${lib} loki record ${i}${extra}`;
}

// RFC 3339 with microseconds from microseconds since the epoch
function isoMicros(us) {
  const ms = Math.floor(us / 1000);
  const frac = String(us % 1000).padStart(3, '0');
  return new Date(ms).toISOString().replace('Z', `${frac}Z`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function winstonRun(expect) {
  const winston = require('winston');
  const LokiTransport = require('winston-loki');
  const levels = ['error', 'warn', 'info', 'debug'];
  const transport = new LokiTransport({
    host: url,
    basicAuth: `winston:${token}`,
    labels: { app: 'winston-test' },
    replaceTimestamp: false,
    interval: 0.2,
    timeout: 30000,
    gracefulShutdown: false,
    // the line is the message itself
    format: winston.format.printf((info) => info.message),
    onConnectionError: (err) => { failures++; console.error(`push failed: ${err.message}`); },
  });
  contentType = transport.batcher.contentType;
  const logger = winston.createLogger({ level: 'debug', transports: [transport] });
  const base = Date.now() - count - 60000;
  for (let i = 0; i < count; i++) {
    const level = levels[i % levels.length];
    const ms = base + i;
    const labels = { job: jobs[i % jobs.length], region: regions[i % regions.length] };
    logger.log({ level, message: message(i), timestamp: new Date(ms).toISOString(), labels });
    expect.push({
      message: message(i), ts: isoMicros(ms * 1000), level,
      attrs: { level, app: 'winston-test', ...labels },
    });
    // a push every 1,000 records, each awaited (the library's flush)
    if (i % 1000 === 999) await transport.flush();
  }
  await transport.flush();
  await transport.close();
}

async function pinoRun(expect) {
  const pino = require('pino');
  const { pinoLoki } = require('pino-loki');
  // pino level -> the label pino-loki sends -> logagg's canonical level
  const levels = [['debug', 'debug'], ['info', 'info'], ['warn', 'warning'], ['error', 'error'], ['fatal', 'critical']];
  const dest = pinoLoki({
    host: url,
    basicAuth: { username: 'pino', password: token },
    labels: { app: 'pino-test' },
    propsToLabels: ['job'],
    logFormat: '{msg}',
    batching: { interval: 0.1, maxBufferSize: 0 },
  });
  contentType = 'application/json';	// pino-loki posts JSON only
  let curNs = '0';
  const logger = pino({
    level: 'debug',
    base: { hostname: 'test-host' },
    timestamp: () => `,"time":"${curNs}"`,
  }, dest);
  const baseUs = (Date.now() - 60000) * 1000 - count * 1000;
  const origError = console.error;
  console.error = (...a) => { failures++; origError(...a); };
  for (let i = 0; i < count; i++) {
    const [level, label] = levels[i % levels.length];
    const us = baseUs + i * 1000 + (i * 7919) % 1000;	// microseconds that vary
    curNs = `${us}000`;
    const job = jobs[i % jobs.length];
    const meta = { user: `u${i % 17}`, request: `r-${i}`, quote: 'say "hi"' };
    logger[level]({ job, meta }, message(i));
    expect.push({
      message: message(i), ts: isoMicros(us), level: level,
      attrs: { level: label, hostname: 'test-host', app: 'pino-test', job, ...meta },
    });
    // let the batching interval send what is buffered
    if (i % 1000 === 999) await sleep(150);
  }
  dest.end();
  await new Promise((r) => dest.on('close', r));
}

(async () => {
  const expect = [];
  if (lib === 'winston') await winstonRun(expect);
  else if (lib === 'pino') await pinoRun(expect);
  else throw new Error(`unknown library ${lib}`);
  fs.writeFileSync(expectFile, JSON.stringify(expect));
  console.log(JSON.stringify({ sent: expect.length, failures, content_type: contentType }));
  process.exitCode = failures ? 1 : 0;
})().catch((e) => { console.error(e); process.exitCode = 2; });
