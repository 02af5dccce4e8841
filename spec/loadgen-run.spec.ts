// The open-loop runner end to end against a small SSE server on a free 127.0.0.1 port: every
// request accounted for, the report well-formed, requests sent on schedule whatever the server
// does (the open-loop property, checked by a server that answers nothing until it has seen the
// whole trace at once), the same trace replayed byte for byte, and a bounded end when nothing answers.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildTrace, executeTrace, runTrace, type Report } from '../testbed/loadgen/index';
import { parseCliArgs } from '../testbed/loadgen/cli';

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** How the server answers: stream a few tokens, hold every request until N are open, or never answer. */
type Mode = { kind: 'stream' } | { kind: 'hold-until'; open: number } | { kind: 'hang' };

/** Tokens streamed per request at most: keeps 1000-token generations short in a spec. */
const MAX_STREAMED_TOKENS = 6;
/** Between streamed tokens, so ITL and TPOT have something to measure. */
const TOKEN_GAP_MS = 2;
const REPLICAS = ['replica-a', 'replica-b', 'replica-c'];

let server: http.Server;
let baseUrl: string;
let mode: Mode = { kind: 'stream' };
let seen: Seen[] = [];
let open = 0;
let maxOpen = 0;
let answered = 0;
let waiting: Array<() => void> = [];
const sockets = new Set<Socket>();

async function answer(res: http.ServerResponse, body: string): Promise<void> {
  const tokens = Math.min(MAX_STREAMED_TOKENS, (JSON.parse(body) as { max_tokens: number }).max_tokens);
  const replica = REPLICAS[answered++ % REPLICAS.length];
  res.writeHead(200, { 'content-type': 'text/event-stream', 'x-llm-replica': replica });
  for (let i = 0; i < tokens; i++) {
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'w' + i } }], system_fingerprint: replica })}\n\n`);
    await new Promise((resolve) => setTimeout(resolve, TOKEN_GAP_MS));
  }
  res.write(`data: ${JSON.stringify({ choices: [], usage: { completion_tokens: tokens } })}\n\n`);
  res.end('data: [DONE]\n\n');
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      seen.push({ path: req.url ?? '', headers: req.headers, body });
      open++;
      maxOpen = Math.max(maxOpen, open);
      res.on('close', () => open--);
      if (mode.kind === 'hang') return;
      if (mode.kind === 'stream') {
        void answer(res, body);
        return;
      }
      // hold-until: nobody is answered before `open` requests are in the server at the same time.
      waiting.push(() => void answer(res, body));
      if (open >= mode.open) {
        const release = waiting;
        waiting = [];
        for (const go of release) go();
      }
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(() => {
  mode = { kind: 'stream' };
  seen = [];
  maxOpen = 0;
  waiting = [];
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function expectWellFormed(report: Report, requests: number): void {
  expect(report.requests.total).toBe(requests);
  expect(report.requests.completed + report.requests.failed).toBe(requests);
  const errors = Object.values(report.errors.byKind).reduce((sum, count) => sum + count, 0);
  expect(errors).toBe(report.requests.failed);
  expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  if (report.replicas.length > 0) expect(report.replicas.reduce((sum, entry) => sum + entry.share, 0)).toBeCloseTo(1, 12);
}

describe('runTrace', () => {
  it('a 2-second Poisson trace: every request accounted for, the report well-formed', async () => {
    const trace = buildTrace({ seed: 1, ratePerS: 15, durationS: 2, mix: 'mixed' });
    expect(trace.entries.length).toBeGreaterThan(10);
    const report = await runTrace(trace, { baseUrl, timeoutMs: 10_000, maxSockets: 64, slo: { ttftMs: 10_000 } });
    expectWellFormed(report, trace.entries.length);
    expect(report.requests.failed).toBe(0);
    expect(seen).toHaveLength(trace.entries.length);
    expect(report.metrics.ttft.count).toBe(trace.entries.length);
    expect(report.metrics.e2e.count).toBe(trace.entries.length);
    expect(report.metrics.scheduleLag.count).toBe(trace.entries.length);
    expect(report.throughput.outputTokens).toBe(trace.entries.reduce((sum, entry) => sum + Math.min(MAX_STREAMED_TOKENS, entry.request.outputTokens), 0));
    expect(report.replicas.map((entry) => entry.replica).sort()).toEqual(REPLICAS);
    expect(report.goodput?.requests).toBe(trace.entries.length);
    expect(report.throughput.offeredPerS).toBe(trace.entries.length / 2);
    expect(report.trace).toMatchObject({ seed: 1, ratePerS: 15, durationS: 2, mix: 'mixed', arrivals: 'poisson', requests: trace.entries.length });
  });

  it('is open loop: a server that answers nothing until the whole trace is in flight still gets the whole trace', async () => {
    // A closed loop would send one request and wait for ever (until its deadline); an open loop
    // sends all 20 on schedule, the server then sees 20 at once and releases them.
    const trace = buildTrace({ seed: 2, ratePerS: 20, durationS: 1, mix: 'short-chat', arrivals: 'uniform' });
    expect(trace.entries).toHaveLength(20);
    mode = { kind: 'hold-until', open: 20 };
    const report = await runTrace(trace, { baseUrl, timeoutMs: 15_000, maxSockets: 64 });
    expect(maxOpen).toBe(20);
    expect(report.requests).toEqual({ total: 20, completed: 20, failed: 0 });
  });

  it('a pool smaller than the concurrency caps it, and the wait shows as socket-ready time', async () => {
    const trace = buildTrace({ seed: 2, ratePerS: 20, durationS: 1, mix: 'short-chat', arrivals: 'uniform' });
    mode = { kind: 'hold-until', open: 20 };
    // 5 sockets can never hold 20 requests at once, so the server releases nothing: every request
    // ends at its deadline, and the 15 beyond the pool only get a socket once an earlier one ends.
    const result = await executeTrace(trace, { baseUrl, timeoutMs: 1000, maxSockets: 5 });
    expect(maxOpen).toBe(5);
    expect(result.records).toHaveLength(20);
    for (const record of result.records) expect(['timeout', 'client-timeout']).toContain(record.error);
    const firstEnd = Math.min(...result.records.slice(0, 5).map((record) => record.sentAtMs + record.elapsedMs));
    for (const record of result.records.slice(5)) {
      if (record.socketReadyMs === null) continue; // still queued at its deadline: a client-timeout
      expect(record.sentAtMs + record.socketReadyMs).toBeGreaterThanOrEqual(firstEnd);
    }
  });

  it('replays the same trace byte for byte against another run (the strategy shootout)', async () => {
    const trace = buildTrace({ seed: 9, ratePerS: 10, durationS: 1.5, mix: 'shared-prefix' });
    const bodiesOf = async () => {
      seen = [];
      await runTrace(trace, { baseUrl, timeoutMs: 10_000 });
      return seen.map((entry) => `${entry.headers['x-request-id']} ${entry.headers['x-session-id']} ${entry.body}`).sort();
    };
    const first = await bodiesOf();
    const second = await bodiesOf();
    expect(first).toHaveLength(trace.entries.length);
    expect(second).toEqual(first);
    expect(first.every((line) => / s9-c\d+ /.test(line))).toBe(true);
  });

  it('records in trace order, with schedule times from the trace', async () => {
    const trace = buildTrace({ seed: 4, ratePerS: 10, durationS: 1, mix: 'short-chat' });
    const result = await executeTrace(trace, { baseUrl, timeoutMs: 10_000 });
    expect(result.records.map((record) => record.id)).toEqual(trace.entries.map((entry) => entry.request.id));
    expect(result.records.map((record) => record.atMs)).toEqual(trace.entries.map((entry) => entry.atMs));
    for (const record of result.records) {
      expect(record.sentAtMs).toBeGreaterThanOrEqual(record.atMs);
      expect(record.scheduleLagMs).toBe(record.sentAtMs - record.atMs);
    }
    expect(result.windowMs).toBeGreaterThanOrEqual(Math.max(...result.records.map((record) => record.sentAtMs + record.elapsedMs)));
  });

  it('sends to the path override with the extra headers', async () => {
    const trace = buildTrace({ seed: 5, ratePerS: 5, durationS: 1, mix: 'short-chat', model: 'my-model' });
    await runTrace(trace, { baseUrl: baseUrl + '/gateway', path: '/v1/custom', timeoutMs: 10_000, headers: { apikey: 'k-1' } });
    expect(seen).toHaveLength(trace.entries.length);
    for (const entry of seen) {
      expect(entry.path).toBe('/gateway/v1/custom');
      expect(entry.headers.apikey).toBe('k-1');
      expect(entry.headers['content-type']).toBe('application/json');
      expect(JSON.parse(entry.body)).toMatchObject({ model: 'my-model', stream: true });
    }
  });

  it('ends by the deadline when nothing ever answers, every request a timeout', async () => {
    mode = { kind: 'hang' };
    const trace = buildTrace({ seed: 6, ratePerS: 10, durationS: 1, mix: 'short-chat' });
    const report = await runTrace(trace, { baseUrl, timeoutMs: 200 });
    expectWellFormed(report, trace.entries.length);
    expect(report.errors.byKind.timeout).toBe(trace.entries.length);
    expect(report.metrics.ttft.count).toBe(0);
    expect(report.replicas).toEqual([]);
  });

  it('counts connection refusals when the target is down', async () => {
    const down = http.createServer();
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    const port = (down.address() as AddressInfo).port;
    await new Promise((resolve) => down.close(resolve));
    const trace = buildTrace({ seed: 7, ratePerS: 10, durationS: 1, mix: 'short-chat' });
    const report = await runTrace(trace, { baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 2000 });
    expectWellFormed(report, trace.entries.length);
    expect(report.errors.byKind['connect-error']).toBe(trace.entries.length);
  });
});

describe('cli arguments', () => {
  it('defaults', () => {
    const config = parseCliArgs([]);
    expect(config.trace).toEqual({ seed: 1, ratePerS: 5, durationS: 30, mix: 'mixed', arrivals: 'poisson', model: 'llm-bench', api: 'chat' });
    expect(config.run).toMatchObject({ baseUrl: 'http://127.0.0.1:8080', timeoutMs: 120_000, maxSockets: 1024, slo: undefined, headers: {} });
    expect(config.json).toBe(false);
  });

  it('the brief example and every option', () => {
    const config = parseCliArgs([
      '--url', 'http://127.0.0.1:9000', '--rate', '2.5', '--duration', '10', '--mix', 'shared-prefix', '--seed', '3',
      '--arrivals', 'uniform', '--model', 'llama', '--api', 'completions', '--path', '/x', '--timeout-ms', '5000',
      '--max-sockets', '8', '--slo-ttft-ms', '200', '--slo-e2e-ms', '4000', '--header', 'apikey: abc', '--json', '--out', 'r.json',
    ]);
    expect(config.trace).toEqual({ seed: 3, ratePerS: 2.5, durationS: 10, mix: 'shared-prefix', arrivals: 'uniform', model: 'llama', api: 'completions' });
    expect(config.run).toEqual({
      baseUrl: 'http://127.0.0.1:9000',
      path: '/x',
      timeoutMs: 5000,
      maxSockets: 8,
      slo: { ttftMs: 200, e2eMs: 4000 },
      headers: { apikey: 'abc' },
    });
    expect(config.json).toBe(true);
    expect(config.out).toBe('r.json');
  });

  it.each([
    [['--rate', '0'], /--rate must be a positive number/],
    [['--rate', 'fast'], /--rate must be a positive number/],
    [['--mix', 'nope'], /--mix must be one of/],
    [['--arrivals', 'bursty'], /--arrivals must be one of/],
    [['--seed', '1.5'], /--seed must be an integer/],
    [['--header', 'no-colon'], /--header must look like/],
    [['--bogus'], /Unknown option/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseCliArgs(argv)).toThrow(message);
  });
});
