// Controllable HTTP backends standing in for LLM replicas, for the integration specs against real
// nginx. Each listens on its own free port of 127.0.0.1 and can, per test: answer after a delay
// with a given status, stream server-sent events, hold requests open until released, serve a
// controllable /health, be killed (stop listening, destroy every socket) and restart on the SAME
// port. Counters say what each saw.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Behaviour {
  /** Status of non-health answers. */
  status: number;
  /** Delay before answering (or before the first SSE chunk). */
  latencyMs: number;
  /** json: one JSON body; sse: `chunks` events `chunkDelayMs` apart, then [DONE]; hold: no answer until release(). */
  mode: 'json' | 'sse' | 'hold';
  chunks: number;
  chunkDelayMs: number;
  /** sse: after this many chunks, wait for release() before sending the rest (0: never). */
  pauseAfterChunks: number;
  /** sse: the headers go out at once (as vLLM's do), the first chunk this many ms later. */
  firstChunkDelayMs: number;
  /** Status of GET /health. */
  healthStatus: number;
  /** GET /health never answers (a hung replica). */
  healthHangs: boolean;
  /** GET /metrics answers this text (Prometheus exposition); null: 404. Not counted as a request. */
  metricsText: string | null;
  /** GET /metrics never answers (a hung replica); still counted in metricsScrapes. */
  metricsHangs: boolean;
  /** An OpenAI usage object with this completion_tokens: in the JSON answer, or as an SSE event before [DONE]; null: none. */
  usageTokens: number | null;
  /** The gateway's model discovery (GET /v1/models, its User-Agent) gets this OpenAI model list (model ids; 'name@parent' for a LoRA adapter); null: 404. Not counted as a request. */
  models: string[] | null;
}

const DEFAULTS: Behaviour = { status: 200, latencyMs: 0, mode: 'json', chunks: 3, chunkDelayMs: 50, pauseAfterChunks: 0, firstChunkDelayMs: 0, healthStatus: 200, healthHangs: false, metricsText: null, metricsHangs: false, usageTokens: null, models: null };

/** What a backend answers in json mode. */
export interface BackendReply {
  backend: string;
  port: number;
  method: string;
  path: string;
  bodyBytes: number;
}

function usageOf(completionTokens: number): Record<string, number> {
  return { prompt_tokens: 5, completion_tokens: completionTokens, total_tokens: 5 + completionTokens };
}

export interface Backend {
  readonly name: string;
  readonly port: number;
  /** 127.0.0.1:port */
  readonly address: string;
  /** Requests seen, /health excluded. */
  readonly requests: number;
  readonly healthChecks: number;
  /** GET /metrics requests seen. */
  readonly metricsScrapes: number;
  /** GET /v1/models requests seen. */
  readonly modelReads: number;
  /** Requests received and not yet answered or closed (held ones included). */
  readonly open: number;
  /** Request bodies seen, in order (the last 100). */
  readonly bodies: string[];
  readonly listening: boolean;
  behave(change: Partial<Behaviour>): void;
  /** Answers every held request now (200, JSON) and resumes paused streams; new requests follow the current behaviour. */
  release(): void;
  /** Stops listening and destroys every connection (held requests included): connections are refused. */
  kill(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  /** Default behaviour, counters to 0 (held requests are released first). */
  reset(): void;
}

export interface Backends {
  list: Backend[];
  /** Releases, kills and forgets every backend. */
  close(): Promise<void>;
  resetAll(): void;
  /** Requests seen per backend, in list order. */
  counts(): number[];
}

function createBackend(name: string): { backend: Backend; listen(port: number): Promise<number> } {
  let behaviour: Behaviour = Object.assign({}, DEFAULTS);
  let requests = 0;
  let healthChecks = 0;
  let metricsScrapes = 0;
  let modelReads = 0;
  let open = 0;
  let port = 0;
  let listening = false;
  const bodies: string[] = [];
  const sockets = new Set<Socket>();
  const held: Array<() => void> = [];

  function answerJson(req: http.IncomingMessage, res: http.ServerResponse, bodyBytes: number, status: number): void {
    const reply: BackendReply & { usage?: unknown } = { backend: name, port, method: req.method ?? '', path: req.url ?? '', bodyBytes };
    if (behaviour.usageTokens !== null) reply.usage = usageOf(behaviour.usageTokens);
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(reply));
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      if (req.url === '/metrics') {
        metricsScrapes++;
        if (behaviour.metricsHangs) return;
        const text = behaviour.metricsText;
        res.writeHead(text === null ? 404 : 200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(text === null ? 'no metrics' : text);
        return;
      }
      // The gateway's model discovery (its User-Agent says so); a client's GET /v1/models is a request.
      if (req.method === 'GET' && req.url === '/v1/models' && req.headers['user-agent'] === 'llm-balancer-model-discovery') {
        modelReads++;
        const ids = behaviour.models;
        res.writeHead(ids === null ? 404 : 200, { 'content-type': 'application/json' });
        // 'name@parent': a LoRA adapter of base model `parent`, listed as vLLM lists one.
        const card = (entry: string) => {
          const at = entry.indexOf('@');
          return at < 0 ? { id: entry, object: 'model', owned_by: 'backend', parent: null } : { id: entry.slice(0, at), object: 'model', owned_by: 'backend', parent: entry.slice(at + 1) };
        };
        res.end(JSON.stringify(ids === null ? { error: 'no model list' } : { object: 'list', data: ids.map(card) }));
        return;
      }
      if (req.url === '/health' || (req.url ?? '').startsWith('/health?')) {
        healthChecks++;
        if (behaviour.healthHangs) return;
        res.writeHead(behaviour.healthStatus, { 'content-type': 'text/plain' });
        res.end(behaviour.healthStatus < 400 ? 'ok' : 'unhealthy');
        return;
      }
      requests++;
      bodies.push(body);
      if (bodies.length > 100) bodies.shift();
      open++;
      let counted = true;
      const done = () => {
        if (counted) open--;
        counted = false;
      };
      res.on('close', done);
      const b = behaviour;
      const start = () => {
        if (b.mode === 'hold') {
          held.push(() => answerJson(req, res, body.length, 200));
          return;
        }
        if (b.mode === 'sse') {
          res.writeHead(b.status, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          let sent = 0;
          let paused = false;
          const next = () => {
            if (res.destroyed) return;
            if (sent === b.chunks) {
              if (b.usageTokens !== null) res.write('data: ' + JSON.stringify({ choices: [], usage: usageOf(b.usageTokens) }) + '\n\n');
              res.end('data: [DONE]\n\n');
              return;
            }
            res.write(`data: {"backend":"${name}","chunk":${sent}}\n\n`);
            sent++;
            // The pause is registered in the same tick as the chunk that starts it: a client that
            // sees that chunk and calls release() at once must find the stream already held (a
            // pause registered by the next timer was missed that way under load, and the stream
            // then waited forever).
            if (b.pauseAfterChunks > 0 && sent === b.pauseAfterChunks && !paused) {
              paused = true;
              held.push(() => setTimeout(next, b.chunkDelayMs));
              return;
            }
            setTimeout(next, b.chunkDelayMs);
          };
          if (b.firstChunkDelayMs > 0) {
            res.flushHeaders();
            setTimeout(next, b.firstChunkDelayMs);
          } else next();
          return;
        }
        answerJson(req, res, body.length, b.status);
      };
      if (b.latencyMs > 0) setTimeout(start, b.latencyMs);
      else start();
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function listen(wanted: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      server.once('error', onError);
      server.listen(wanted, '127.0.0.1', () => {
        server.off('error', onError);
        port = (server.address() as AddressInfo).port;
        listening = true;
        resolve(port);
      });
    });
  }

  function release(): void {
    const answers = held.splice(0, held.length);
    for (const answer of answers) answer();
  }

  const backend: Backend = {
    name,
    get port() {
      return port;
    },
    get address() {
      return `127.0.0.1:${port}`;
    },
    get requests() {
      return requests;
    },
    get healthChecks() {
      return healthChecks;
    },
    get metricsScrapes() {
      return metricsScrapes;
    },
    get modelReads() {
      return modelReads;
    },
    get open() {
      return open;
    },
    get bodies() {
      return bodies.slice();
    },
    get listening() {
      return listening;
    },
    behave(change) {
      behaviour = Object.assign({}, behaviour, change);
    },
    release,
    kill() {
      held.splice(0, held.length);
      if (!listening) return Promise.resolve();
      listening = false;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
      });
    },
    async restart() {
      if (listening) return;
      await listen(port);
    },
    reset() {
      release();
      behaviour = Object.assign({}, DEFAULTS);
      requests = 0;
      healthChecks = 0;
      metricsScrapes = 0;
      modelReads = 0;
      bodies.length = 0;
    },
  };
  return { backend, listen };
}

/** Starts `n` backends named b0, b1, ... on free ports of 127.0.0.1. */
export async function startBackends(n: number): Promise<Backends> {
  const list: Backend[] = [];
  for (let i = 0; i < n; i++) {
    const created = createBackend('b' + i);
    await created.listen(0);
    list.push(created.backend);
  }
  return {
    list,
    async close() {
      await Promise.all(list.map((b) => b.kill()));
    },
    resetAll() {
      for (const b of list) b.reset();
    },
    counts() {
      return list.map((b) => b.requests);
    },
  };
}
