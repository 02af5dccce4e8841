// A small HTTP client that can abort, status readers and waits, for the nginx integration specs;
// real nginx with the generated configuration comes from testbed/lib/nginx-balancer.ts.
import http from 'node:http';
import type { Balancer } from '../../testbed/lib/nginx-balancer';
export { render, startBalancer } from '../../testbed/lib/nginx-balancer';
export type { Balancer, BalancerStartOptions, Rendered } from '../../testbed/lib/nginx-balancer';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Destroy the request this many ms after sending it (a client abort); resolves with status 0. */
  abortAfterMs?: number;
  /** Destroy the request once the response headers and this many body bytes arrived. */
  abortAfterBytes?: number;
  /** Give up (and fail) after this long; default 10 s. */
  timeoutMs?: number;
}

/** One HTTP request on a fresh connection (no pooling: each request is independent). */
export function request(url: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? (options.body === undefined ? 'GET' : 'POST'), headers: options.headers, agent: false });
    let settled = false;
    const finish = (reply: Reply | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (reply instanceof Error) reject(reply);
      else resolve(reply);
    };
    const timer = setTimeout(() => {
      req.destroy();
      finish(new Error(`request to ${url} timed out after ${options.timeoutMs ?? 10_000} ms`));
    }, options.timeoutMs ?? 10_000);
    req.on('error', (e) => {
      if (options.abortAfterMs !== undefined || options.abortAfterBytes !== undefined) finish({ status: 0, headers: {}, body: '' });
      else finish(e);
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        if (options.abortAfterBytes !== undefined && body.length >= options.abortAfterBytes) {
          req.destroy();
          finish({ status: res.statusCode ?? 0, headers: res.headers, body });
        }
      });
      res.on('end', () => finish({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => finish({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('close', () => finish({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    if (options.abortAfterMs !== undefined) {
      setTimeout(() => {
        req.destroy();
        finish({ status: 0, headers: {}, body: '' });
      }, options.abortAfterMs);
    }
    req.end(options.body);
  });
}

/** One row of GET /llm-balancer/status. */
export interface StatusRow {
  id: string;
  address: string;
  upstream: string;
  weight: number;
  state: string;
  healthy: boolean;
  ejected_until: string | null;
  ejections: number;
  in_flight: number;
  tokens_in_flight: number;
  latency_ewma_ms: number | null;
  ttft_ewma_ms: number | null;
  tpot_ewma_ms: number | null;
  samples: number;
  picks: number;
  failures: number;
}

export interface StatusDocument {
  strategy: string;
  generated_at: string;
  replicas: StatusRow[];
  /** Only for strategies that read the OpenAI body. */
  requests_without_llm_body?: number;
}

export async function readStatus(b: Balancer): Promise<StatusDocument> {
  const reply = await request(b.nginx.url('/llm-balancer/status'));
  if (reply.status !== 200) throw new Error(`status endpoint answered ${reply.status}: ${reply.body}`);
  return JSON.parse(reply.body) as StatusDocument;
}

/** Polls `check` every 20 ms until it returns true; fails after `timeoutMs` with `what`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sum of in_flight over all replicas, read from the status endpoint. */
export async function totalInFlight(b: Balancer): Promise<number> {
  const doc = await readStatus(b);
  return doc.replicas.reduce((sum, r) => sum + r.in_flight, 0);
}

export interface Stream {
  /** Status once the response header arrived (0 before). */
  status(): number;
  /** The body received so far. */
  received(): string;
  /** Resolves with the whole body when the response ends (or the connection closes). */
  done: Promise<string>;
  /** Client abort: destroys the connection. */
  abort(): void;
}

/** A request whose body is observed while it streams. */
export function stream(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Stream {
  let status = 0;
  let body = '';
  const req = http.request(url, { method: options.method ?? (options.body === undefined ? 'GET' : 'POST'), headers: options.headers, agent: false });
  const done = new Promise<string>((resolve) => {
    req.on('error', () => resolve(body));
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
      res.on('close', () => resolve(body));
      res.on('error', () => resolve(body));
    });
  });
  req.end(options.body);
  return { status: () => status, received: () => body, done, abort: () => req.destroy() };
}

/**
 * Waits until the status endpoint shows no request in flight. The log phase that ends an attempt
 * runs just after the client got the last byte, so "immediately 0" would race it.
 */
export async function drained(b: Balancer): Promise<void> {
  let last = -1;
  await waitFor('in-flight counts back to 0', async () => {
    last = await totalInFlight(b);
    return last === 0;
  }).catch((e: Error) => {
    throw new Error(`${e.message} (still ${last})`);
  });
}
