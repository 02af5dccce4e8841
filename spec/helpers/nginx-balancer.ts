// Real nginx running the built njs module with the configuration the project's generator renders
// (plugins/nginx/generator), in front of controllable backends, plus a small HTTP client that
// can abort. For the nginx integration specs.
import http from 'node:http';
import path from 'node:path';
import { NGINX_OUTFILE } from '../../build/build.js';
import { preloadedConfig, renderNginxConfig } from '../../plugins/nginx/generator/generate';
import { loadBalancerFile } from '../../plugins/nginx/generator/load';
import { formatErrors } from '../../shared/config/validate';
import type { BalancerConfig } from '../../shared/config/types';
import { loadNginxEnv } from './nginx-env';
import { createPrefix, freePort, startNginx, testConfig } from './nginx-process';
import type { NginxInstance, NginxPrefix, NginxTestResult } from './nginx-process';

export interface Rendered {
  config: BalancerConfig;
  conf: string;
  /** The preloaded JSON text. */
  json: string;
}

/**
 * Validates `balancer` (a balancer file as an object: shared options + an `nginx` section) the way
 * the CLI does and renders the full nginx.conf for `port`, 2 workers, the JSON at `jsonPath`.
 */
export function render(balancer: Record<string, unknown>, port: number, jsonPath: string): Rendered {
  const env = loadNginxEnv();
  const nginxSection = Object.assign({ worker_processes: 2, listen: `127.0.0.1:${port}` }, (balancer.nginx as object | undefined) ?? {});
  const loaded = loadBalancerFile(JSON.stringify(Object.assign({}, balancer, { nginx: nginxSection })));
  if (!loaded.ok) throw new Error(`invalid balancer file:\n${formatErrors(loaded.errors)}`);
  const conf = renderNginxConfig(
    {
      config: loaded.config,
      nginx: Object.assign({}, loaded.nginx, { module_path: env.modulePath, js_path: path.dirname(NGINX_OUTFILE), config_json: jsonPath }),
      source: 'spec',
    },
    'full',
  );
  return { config: loaded.config, conf, json: JSON.stringify(preloadedConfig(loaded.config, loaded.nginx)) };
}

export interface Balancer {
  nginx: NginxInstance;
  config: BalancerConfig;
  prefix: NginxPrefix;
  port: number;
  /** Re-renders with a new balancer file and reloads with HUP (the state zone is kept). */
  reconfigure(balancer: Record<string, unknown>): Promise<void>;
  /** Error-log lines where the njs module failed: uncaught exceptions or a handler reporting its own failure. */
  moduleErrors(): string[];
  stop(): Promise<void>;
}

export interface BalancerStartOptions {
  /**
   * The error log's level (nginx's default is `error`): `warn` shows the module's warnings, e.g.
   * the NGINX Plus peer sync's. Added to the generated main context as `error_log stderr <level>;`.
   */
  errorLogLevel?: 'warn' | 'notice' | 'info';
  /** Directives of the user's own put at the top of the balanced location, e.g. `deny all;` or `limit_req ...;`. */
  locationDirectives?: string[];
  /** http-context directives of the user's own, e.g. `limit_req_zone ...;`. */
  httpDirectives?: string[];
}

/** The rendered config with the test-only main-context additions of `options`. */
function withOptions(conf: string, options: BalancerStartOptions): string {
  let out = conf;
  const insert = (marker: string, lines: string[], what: string) => {
    if (!out.includes(marker)) throw new Error(`cannot place ${what}: no \`${marker.trim()}\` in the rendered config`);
    out = out.replace(marker, marker + lines.join('\n') + '\n');
  };
  if (options.errorLogLevel !== undefined) insert('\npid nginx.pid;\n', [`error_log stderr ${options.errorLogLevel};`], 'error_log');
  if (options.httpDirectives) insert('\nhttp {\n', options.httpDirectives, 'http directives');
  if (options.locationDirectives) insert('\n    location /v1/ {\n', options.locationDirectives, 'location directives');
  return out;
}

/** Renders, checks with `nginx -t` (throws with nginx's words on failure) and starts nginx. */
export async function startBalancer(balancer: Record<string, unknown>, label = 'balancer', options: BalancerStartOptions = {}): Promise<Balancer> {
  const port = await freePort();
  const prefix = createPrefix(label);
  const jsonPath = path.join(prefix.dir, 'llm-balancer.json');
  let rendered = render(balancer, port, jsonPath);
  rendered.conf = withOptions(rendered.conf, options);
  prefix.write('llm-balancer.json', rendered.json);
  const confPath = prefix.write('nginx.conf', rendered.conf);
  const verdict: NginxTestResult = await testConfig(prefix.dir, confPath);
  if (!verdict.ok) {
    prefix.remove();
    throw new Error(`nginx -t failed:\n${verdict.output}\n${rendered.conf}`);
  }
  let nginx: NginxInstance;
  try {
    nginx = await startNginx({ conf: rendered.conf, port, prefix });
  } catch (e) {
    prefix.remove();
    throw e;
  }
  const result: Balancer = {
    nginx,
    get config() {
      return rendered.config;
    },
    prefix,
    port,
    async reconfigure(next) {
      rendered = render(next, port, jsonPath);
      rendered.conf = withOptions(rendered.conf, options);
      prefix.write('llm-balancer.json', rendered.json);
      await nginx.reload(rendered.conf);
    },
    moduleErrors() {
      return nginx
        .stderr()
        .split('\n')
        .filter((line) => /js exception|js: llm-balancer: .*failed/.test(line));
    },
    async stop() {
      await nginx.stop();
      prefix.remove();
    },
  };
  return result;
}

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
  latency_ewma_ms: number | null;
  ttft_ewma_ms: number | null;
  samples: number;
  picks: number;
  failures: number;
}

export interface StatusDocument {
  strategy: string;
  generated_at: string;
  replicas: StatusRow[];
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
