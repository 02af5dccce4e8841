// The load generator's streaming client against a scripted SSE server on a free 127.0.0.1 port:
// each scenario (chosen by the request path) plays one way a replica or gateway can answer.
// Assertions are about order and classification, never about how long anything took.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SseParser, createClient, type ClientResult, type LoadClient, type SseEvent } from '../testbed/loadgen/index';

/** Between the headers and the first token: long enough that TTFT and header time differ visibly. */
const PREFILL_MS = 40;
/** Between tokens. */
const TOKEN_GAP_MS = 3;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function chatChunk(content: string, extra: Record<string, unknown> = {}): string {
  return `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }], ...extra })}\n\n`;
}

function usageChunk(completionTokens: number): string {
  return `data: ${JSON.stringify({ id: 'c1', choices: [], usage: { prompt_tokens: 10, completion_tokens: completionTokens, total_tokens: 10 + completionTokens } })}\n\n`;
}

const DONE = 'data: [DONE]\n\n';

type Scenario = (res: http.ServerResponse, req: http.IncomingMessage) => Promise<void> | void;

function sse(res: http.ServerResponse, headers: Record<string, string> = { 'x-llm-replica': 'replica-a' }): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
  res.flushHeaders();
}

/** Headers at once, a role-only chunk, the prefill pause, then `tokens` content chunks. */
async function stream(res: http.ServerResponse, tokens: number, options: { usage?: number | null; done?: boolean; headers?: Record<string, string>; extra?: Record<string, unknown> } = {}) {
  sse(res, options.headers);
  res.write(`data: ${JSON.stringify({ id: 'c1', choices: [{ index: 0, delta: { role: 'assistant', content: '' } }], ...options.extra })}\n\n`);
  await sleep(PREFILL_MS);
  for (let i = 0; i < tokens; i++) {
    res.write(chatChunk('tok' + i + ' ', options.extra));
    await sleep(TOKEN_GAP_MS);
  }
  const usage = options.usage === undefined ? tokens : options.usage;
  if (usage !== null) res.write(usageChunk(usage));
  if (options.done !== false) res.write(DONE);
  res.end();
}

/** Requests held open by 'hold-until-released', answered when the test says so. */
const held: http.ServerResponse[] = [];

const SCENARIOS: Record<string, Scenario> = {
  ok: (res) => stream(res, 5),
  'usage-differs-from-chunks': (res) => stream(res, 3, { usage: 7 }),
  'no-usage': (res) => stream(res, 4, { usage: null }),
  fingerprint: (res) => stream(res, 2, { headers: {}, extra: { system_fingerprint: 'replica-fp' } }),
  'header-beats-fingerprint': (res) => stream(res, 2, { extra: { system_fingerprint: 'replica-fp' } }),
  anonymous: (res) => stream(res, 2, { headers: {} }),
  'single-token': (res) => stream(res, 1),
  completions: async (res) => {
    sse(res);
    for (const text of ['a', 'b', 'c']) res.write(`data: ${JSON.stringify({ id: 'x', object: 'text_completion', choices: [{ index: 0, text }] })}\n\n`);
    res.end(usageChunk(3) + DONE);
  },
  'crlf-one-byte-at-a-time': async (res) => {
    sse(res);
    const body = (chatChunk('x') + ': keep-alive comment\n\n' + chatChunk('y') + usageChunk(2) + DONE).replace(/\n/g, '\r\n');
    for (const byte of Buffer.from(body)) {
      res.write(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve)); // a separate write, not a timed pause
    }
    res.end();
  },
  'malformed-json': (res) => {
    sse(res);
    res.end(chatChunk('x') + 'data: {"choices": [\n\n' + DONE);
  },
  'not-sse': (res) => {
    sse(res);
    res.end(chatChunk('x') + 'hello there\n\n' + DONE);
  },
  'no-choices': (res) => {
    sse(res);
    res.end('data: {"id": "c1"}\n\n' + DONE);
  },
  'missing-done': (res) => stream(res, 3, { done: false }),
  'event-after-done': (res) => {
    sse(res);
    res.end(chatChunk('x') + DONE + chatChunk('y'));
  },
  'unterminated-event': (res) => {
    sse(res);
    res.end(chatChunk('x') + 'data: [DONE]\n');
  },
  'json-instead-of-stream': (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-llm-replica': 'replica-a' });
    res.end('{"choices": []}');
  },
  'error-event': (res) => {
    sse(res);
    res.end(chatChunk('x') + 'data: {"error": {"message": "out of KV cache", "code": 500}}\n\n' + DONE);
  },
  'status-500': (res) => {
    res.writeHead(500, { 'content-type': 'application/json', 'x-llm-replica': 'replica-b' });
    res.end('{"error": {"message": "engine died"}}');
  },
  'status-429': (res) => {
    res.writeHead(429, { 'content-type': 'application/json' });
    res.end('{"error": {"message": "slow down"}}');
  },
  'hang-before-headers': () => {},
  'hang-mid-stream': (res) => {
    sse(res);
    res.write(chatChunk('x'));
  },
  'reset-before-headers': (_res, req) => {
    req.socket.destroy();
  },
  'reset-mid-stream': async (res, req) => {
    sse(res);
    res.write(chatChunk('x'));
    await sleep(5);
    req.socket.destroy();
  },
  'hold-until-released': (res) => {
    held.push(res);
  },
};

let server: http.Server;
let baseUrl: string;
const sockets = new Set<Socket>();
const seenBodies: unknown[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      seenBodies.push(JSON.parse(body));
      const scenario = SCENARIOS[(req.url ?? '').slice(1)];
      if (scenario === undefined) {
        res.writeHead(404).end();
        return;
      }
      void scenario(res, req);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

const REQUEST_BODY = { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, stream: true, stream_options: { include_usage: true } };

/**
 * The hang scenarios end by this deadline. Generous: on a loaded machine (the chaos specs run
 * beside this one) 300 ms turned a slow answer into a timeout.
 */
const TIMEOUT_MS = 1500;

async function send(scenario: string, client?: LoadClient): Promise<ClientResult> {
  const own = client ?? createClient({ baseUrl, timeoutMs: TIMEOUT_MS });
  try {
    return await own.send({ path: '/' + scenario, headers: { 'x-request-id': scenario }, body: REQUEST_BODY });
  } finally {
    if (client === undefined) own.close();
  }
}

describe('a successful stream', () => {
  it('measures TTFT at the first content chunk, after the headers and the role-only chunk', async () => {
    const result = await send('ok');
    expect(result).toMatchObject({ ok: true, status: 200, error: null, errorDetail: null, replica: 'replica-a', outputTokens: 5, contentChunks: 5, usageOutputTokens: 5 });
    const headersMs = result.headersMs as number;
    const ttftMs = result.ttftMs as number;
    const e2eMs = result.e2eMs as number;
    // Order, not duration: the server flushed headers, then paused before the first token.
    expect(result.socketReadyMs as number).toBeLessThanOrEqual(headersMs);
    expect(ttftMs).toBeGreaterThan(headersMs);
    expect(e2eMs).toBeGreaterThan(ttftMs);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(e2eMs);
    expect(result.interTokenMs).toHaveLength(4);
    for (const gap of result.interTokenMs) expect(gap).toBeGreaterThanOrEqual(0);
    expect(result.tpotMs).toBeCloseTo((e2eMs - ttftMs) / 4, 9);
  });

  it.each([
    ['usage-differs-from-chunks', { outputTokens: 7, contentChunks: 3, usageOutputTokens: 7 }],
    ['no-usage', { outputTokens: 4, contentChunks: 4, usageOutputTokens: null }],
    ['single-token', { outputTokens: 1, contentChunks: 1, tpotMs: null }],
    ['completions', { outputTokens: 3, contentChunks: 3 }],
    ['crlf-one-byte-at-a-time', { outputTokens: 2, contentChunks: 2 }],
  ])('%s: counts %j', async (scenario, expected) => {
    const result = await send(scenario);
    expect(result.ok, result.errorDetail ?? '').toBe(true);
    expect(result).toMatchObject(expected);
    expect(result.interTokenMs).toHaveLength(result.contentChunks - 1);
  });

  it.each([
    ['ok', 'replica-a'],
    ['fingerprint', 'replica-fp'],
    ['header-beats-fingerprint', 'replica-a'],
    ['anonymous', null],
  ])('%s: the replica is %s', async (scenario, replica) => {
    const result = await send(scenario);
    expect(result.ok).toBe(true);
    expect(result.replica).toBe(replica);
  });

  it('reuses one keep-alive connection for sequential requests', async () => {
    const client = createClient({ baseUrl, timeoutMs: 2000, maxSockets: 1 });
    const before = new Set(sockets);
    try {
      for (let i = 0; i < 3; i++) expect((await send('ok', client)).ok).toBe(true);
    } finally {
      client.close();
    }
    const opened = [...sockets].filter((socket) => !before.has(socket));
    expect(opened.length).toBeLessThanOrEqual(1);
  });
});

describe('failures', () => {
  it.each([
    ['malformed-json', 'malformed-stream', /not JSON/],
    ['not-sse', 'malformed-stream', /not an SSE line/],
    ['no-choices', 'malformed-stream', /choices/],
    ['missing-done', 'malformed-stream', /without data: \[DONE\]/],
    ['event-after-done', 'malformed-stream', /after data: \[DONE\]/],
    ['unterminated-event', 'malformed-stream', /inside an event/],
    ['json-instead-of-stream', 'malformed-stream', /text\/event-stream/],
    ['reset-mid-stream', 'malformed-stream', /./],
    ['error-event', 'stream-error', /out of KV cache/],
    ['hang-before-headers', 'timeout', /1500 ms/],
    ['hang-mid-stream', 'timeout', /streaming/],
    ['reset-before-headers', 'connect-error', /./],
  ])('%s → %s', async (scenario, kind, detail) => {
    const result = await send(scenario);
    expect(result.ok).toBe(false);
    expect(result.error).toBe(kind);
    expect(result.errorDetail).toMatch(detail);
    expect(result.e2eMs).toBeNull();
    expect(result.tpotMs).toBeNull();
  });

  it('a hung stream keeps what it measured before the deadline', async () => {
    const result = await send('hang-mid-stream');
    expect(result.status).toBe(200);
    expect(result.contentChunks).toBe(1);
    expect(result.ttftMs as number).toBeGreaterThanOrEqual(result.headersMs as number);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(result.ttftMs as number);
  });

  it.each([
    ['status-500', 500, 'replica-b', /HTTP 500: .*engine died/],
    ['status-429', 429, null, /HTTP 429: .*slow down/],
  ])('%s → http-status with the status, the replica and the body', async (scenario, status, replica, detail) => {
    const result = await send(scenario);
    expect(result).toMatchObject({ ok: false, error: 'http-status', status, replica });
    expect(result.errorDetail).toMatch(detail);
  });

  it('connection refused → connect-error, no status', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const client = createClient({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 2000 });
    try {
      const result = await client.send({ path: '/ok', headers: {}, body: REQUEST_BODY });
      expect(result).toMatchObject({ ok: false, error: 'connect-error', status: null, headersMs: null, ttftMs: null });
      expect(result.errorDetail).toMatch(/ECONNREFUSED/);
    } finally {
      client.close();
    }
  });

  it('no socket free before the deadline → client-timeout (the generator, not the server)', async () => {
    const client = createClient({ baseUrl, timeoutMs: 5000, maxSockets: 1 });
    try {
      const holding = client.send({ path: '/hold-until-released', headers: {}, body: REQUEST_BODY });
      const queued = await client.send({ path: '/ok', headers: {}, body: REQUEST_BODY }, { timeoutMs: 100 });
      expect(queued).toMatchObject({ ok: false, error: 'client-timeout', status: null, socketReadyMs: null });
      // Release the first request: it completes normally on its own socket.
      while (held.length === 0) await sleep(5);
      await stream(held.shift() as http.ServerResponse, 1);
      expect((await holding).ok).toBe(true);
    } finally {
      client.close();
    }
  });

  it('sends the body as JSON with the request and client headers', async () => {
    const client = createClient({ baseUrl, timeoutMs: 2000, headers: { authorization: 'Bearer k' } });
    const before = seenBodies.length;
    try {
      await client.send({ path: '/ok', headers: {}, body: REQUEST_BODY });
    } finally {
      client.close();
    }
    expect(seenBodies.slice(before)).toEqual([REQUEST_BODY]);
  });

  it.each([['https://127.0.0.1:1'], ['ftp://127.0.0.1:1']])('refuses the non-http target %s', (url) => {
    expect(() => createClient({ baseUrl: url, timeoutMs: 100 })).toThrow(/only http/);
  });
});

describe('SseParser', () => {
  const STREAM = ': comment\n\ndata: {"a":1}\n\nevent: message\ndata: line one\ndata: line two\nid: 7\nretry: 10\n\ndata:no-space\n\ndata: [DONE]\n\n';
  const EVENTS: SseEvent[] = [
    { event: null, data: '{"a":1}' },
    { event: 'message', data: 'line one\nline two' },
    { event: null, data: 'no-space' },
    { event: null, data: '[DONE]' },
  ];

  function parse(chunks: string[]): SseEvent[] {
    const events: SseEvent[] = [];
    const parser = new SseParser((event) => events.push(event));
    for (const chunk of chunks) parser.push(chunk);
    parser.end();
    return events;
  }

  it.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('%s line endings, split anywhere, give the same events', (_name, ending) => {
    const text = STREAM.replace(/\n/g, ending);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 12 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), text.length];
        const chunks = points.slice(1).map((end, i) => text.slice(points[i], end));
        expect(parse(chunks)).toEqual(EVENTS);
      }),
    );
  });

  it.each([
    ['an unknown field', 'data: x\nfoo: bar\n\n', /not an SSE line/],
    ['a bare word', 'hello\n\n', /not an SSE line/],
    ['a stream ending inside an event', 'data: x\n', /inside an event/],
    ['a stream ending mid-line', 'data: x', /inside an event/],
  ])('rejects %s', (_name, text, message) => {
    expect(() => parse([text])).toThrow(message);
  });

  it('drops an event without data, as browsers do', () => {
    expect(parse(['event: ping\n\ndata: x\n\n'])).toEqual([{ event: null, data: 'x' }]);
  });
});
