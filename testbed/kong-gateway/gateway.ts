// "Kong" as an HTTP gateway, for the strategy shootout: Kong itself cannot run here (see
// GATEWAY-FACTS), so this process plays the part of Kong's nginx in front of the REAL
// kong-js-pluginserver running the built plugin (dist/kong/llm-balancer.js):
//
//   client ──HTTP──▶ this proxy ── access phase (MessagePack-RPC, testbed/lib/kong-harness.ts) ──▶ plugin
//                       │  set_target chose a replica
//                       ├──HTTP (keepalive pool)──▶ replica, response STREAMED back chunk by chunk
//                       └── log phase after the last byte, kong.log.serialize() in Kong 3.x's shape
//
// What it keeps of Kong: the request body is read whole before the access phase (Kong's default
// request_buffering), the upstream Host is the target's (preserve_host off), X-Forwarded-For /
// X-Real-IP are added, the timeouts in force (set_timeouts, else the Service's) bound the connect
// and every read, connection failures and timeouts are retried on the SAME target up to the
// retries in force (set_retries, else the Service's), upstream connections are kept alive, the client gets
// X-Kong-Upstream-Latency / X-Kong-Proxy-Latency, a plugin exit (kong.response.exit) is the answer,
// and the log phase runs once the response is complete (or the client went away). What it does not
// keep: Kong's Lua work per request (router, other plugins), its error pages beyond the status and
// message, HTTP/2, TLS. Requests are spread over a few RPC connections, as Kong's pool does.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  KONG_ERROR_MESSAGES,
  KONG_PROXY_ERROR_MESSAGES,
  KongRpc,
  KongSide,
  NO_RUN,
  createFakeRequestState,
  pluginUuid,
  fakePdkHandlers,
  flatHeaders,
  markRetriedTry,
  queryString,
  serializeEntry,
  startPluginServer,
  upstreamTimeouts,
} from '../lib/kong-harness';
import type { ExchangeSummary, FakeRequestState, KongTry, PhaseRun, PluginServer } from '../lib/kong-harness';
import { REPO_ROOT } from '../lib/nginx-env';

/** The Kong bundle `node build/build.js` writes (build/build.js KONG_OUTFILE). */
export const KONG_PLUGIN_FILE = path.join(REPO_ROOT, 'dist', 'kong', 'llm-balancer.js');

export interface KongGatewayOptions {
  /** The llm-balancer plugin's config, as under `plugins: - name: llm-balancer  config:` in kong.yml. */
  config: Record<string, unknown>;
  /** Listen port on 127.0.0.1 (default: a free one). */
  port?: number;
  /** The Service's `retries` (kong.yml: 0, the plugin does its own failover). Default 0. */
  serviceRetries?: number;
  /** RPC connections to the plugin server, used in turn (Kong keeps a pool). Default 4. */
  connections?: number;
  /**
   * The Service's connect_timeout / write_timeout / read_timeout in ms (Kong's defaults: 60 s each),
   * in force unless the plugin calls set_timeouts. Shown in the log entry's Service, as in Kong.
   */
  serviceTimeoutsMs?: { connect: number; write: number; read: number };
  /** The plugin bundle (default dist/kong/llm-balancer.js). */
  pluginFile?: string;
  /**
   * Kong's routes in front of the plugin (on the Service): a request whose path starts with
   * `prefix` (the longest wins), or that carries `header` with its value (Kong routes match on
   * headers too; checked first), matched the route `name` (kong.router.get_route); every other
   * request the default route llm-route.
   */
  routes?: Array<{ prefix?: string; header?: { name: string; value: string }; name: string }>;
  /**
   * Plays Kong's authentication (key-auth and friends, which run before the plugin): the value of
   * this request header, when present, is the consumer id Kong verified (kong.client.get_consumer).
   */
  consumerHeader?: string;
}

export interface KongGateway {
  url: string;
  port: number;
  server: PluginServer;
  /** Problems seen: RPC failures, PDK calls the harness cannot answer, plugin log lines at err or above. First 100. */
  errors(): string[];
  /** Requests answered so far. */
  handled(): number;
  stop(): Promise<void>;
}

const PLUGIN_NAME = 'llm-balancer';
// Kong: upstream_keepalive_pool_size 512 per upstream, upstream_keepalive_idle_timeout 60 s.
const UPSTREAM_KEEPALIVE_SOCKETS = 512;
const ERROR_LEVELS = new Set(['err', 'crit', 'alert', 'emerg']);
const MAX_ERRORS = 100;
// stop(): how long requests still in flight may take to finish, then how long their log phases may take once cut.
const STOP_GRACE_MS = 3_000;
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer']);
const JSON_UTF8 = 'application/json; charset=utf-8';

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** The client address as nginx's $remote_addr has it (no IPv4-mapped prefix). */
function clientAddress(req: http.IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '127.0.0.1';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The consumer Kong's auth would have verified: the consumer header's value (KongGatewayOptions.consumerHeader). */
function consumerOf(req: http.IncomingMessage, header: string | undefined): { id: string } | null {
  if (header === undefined) return null;
  const value = req.headers[header.toLowerCase()];
  return typeof value === 'string' && value !== '' ? { id: value } : null;
}

function exitBody(body: unknown): string {
  if (body === undefined || body === null) return '';
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return Buffer.from(body).toString('utf8');
  return JSON.stringify(body);
}

export async function startKongGateway(options: KongGatewayOptions): Promise<KongGateway> {
  const pluginFile = options.pluginFile ?? KONG_PLUGIN_FILE;
  if (!fs.existsSync(pluginFile)) throw new Error(`${pluginFile} is missing: run \`node build/build.js\``);
  const serviceRetries = options.serviceRetries ?? 0;
  const serviceTimeouts = options.serviceTimeoutsMs ?? { connect: 60_000, write: 60_000, read: 60_000 };
  const pluginsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmb-kong-gw-'));
  fs.copyFileSync(pluginFile, path.join(pluginsDir, PLUGIN_NAME + '.js'));
  const errors: string[] = [];
  const note = (message: string): void => {
    if (errors.length < MAX_ERRORS) errors.push(message);
  };

  let server: PluginServer;
  try {
    server = await startPluginServer(pluginsDir);
  } finally {
    fs.rmSync(pluginsDir, { recursive: true, force: true });
  }
  const rpcs: KongRpc[] = [];
  const sides: KongSide[] = [];
  let instanceId = 0;
  const headerRoutes = (options.routes ?? []).filter((r) => r.header !== undefined);
  const prefixRoutes = (options.routes ?? []).filter((r) => r.prefix !== undefined).sort((a, b) => (b.prefix as string).length - (a.prefix as string).length);
  try {
    for (let i = 0; i < (options.connections ?? 4); i++) {
      const rpc = await KongRpc.connect(server.socketPath, { callTimeoutMs: 30_000 });
      rpcs.push(rpc);
      sides.push(new KongSide(rpc));
    }
    // One plugin entity: one instance, which every connection's events name.
    instanceId = await sides[0].startInstance(PLUGIN_NAME, options.config, 'shootout-gateway');
    for (const side of sides.slice(1)) await side.adopt(instanceId);
  } catch (error) {
    for (const rpc of rpcs) rpc.close();
    await server.stop();
    throw error;
  }
  const phases = await sides[0].pluginPhases(instanceId);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: UPSTREAM_KEEPALIVE_SOCKETS });
  let nextSide = 0;
  let handled = 0;

  const runPhase = async (side: KongSide, phase: 'access' | 'log', state: FakeRequestState, handlers: ReturnType<typeof fakePdkHandlers>): Promise<PhaseRun | null> => {
    if (!phases.includes(phase)) return NO_RUN(side.currentId(instanceId));
    const logged = state.logs.length;
    try {
      const run = await side.runPhase(instanceId, phase, handlers);
      for (const method of run.unexpected) note(`${phase}: unexpected PDK call ${method}`);
      return run;
    } catch (error) {
      note(`${phase}: ${error instanceof Error ? error.message : String(error)}`);
      return null;
    } finally {
      for (const line of state.logs.slice(logged)) if (ERROR_LEVELS.has(line.level)) note(`plugin ${phase} ${line.level}: ${line.message}`);
    }
  };

  const logPhase = async (side: KongSide, state: FakeRequestState, handlers: ReturnType<typeof fakePdkHandlers>, exchange: ExchangeSummary | null, response: { status: number; headers: Record<string, string>; bodyBytes: number }, kongMs: number): Promise<void> => {
    state.phase = 'log';
    state.response = { status: response.status, headers: response.headers, source: exchange === null ? 'exit' : exchange.upstreamStatus === null ? 'error' : 'service' };
    state.serialized = JSON.stringify(serializeEntry(state, exchange, response, kongMs, Date.now()));
    await runPhase(side, 'log', state, handlers);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const body = await readBody(req);
    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const query: Record<string, string> = {};
    url.searchParams.forEach((value, name) => (query[name] = value));
    const state = createFakeRequestState({
      method: req.method ?? 'GET',
      path: url.pathname,
      headers: flatHeaders(req.headers),
      body: body.length > 0 ? body.toString('utf8') : undefined,
      clientIp: clientAddress(req),
      consumer: consumerOf(req, options.consumerHeader),
      query,
    });
    // The route Kong's router matched (by path prefix here).
    const route =
      headerRoutes.find((r) => req.headers[(r.header as { name: string }).name.toLowerCase()] === (r.header as { value: string }).value) ??
      prefixRoutes.find((r) => url.pathname.startsWith(r.prefix as string));
    if (route !== undefined) {
      state.route.name = route.name;
      state.route.id = pluginUuid('route:' + route.name);
    }
    state.service.retries = serviceRetries;
    state.service.connect_timeout = serviceTimeouts.connect;
    state.service.write_timeout = serviceTimeouts.write;
    state.service.read_timeout = serviceTimeouts.read;
    const handlers = fakePdkHandlers(state);
    const side = sides[nextSide++ % sides.length];

    const accessStarted = performance.now();
    const access = await runPhase(side, 'access', state, handlers);
    const kongMs = performance.now() - accessStarted;
    if (access === null) {
      // The plugin server failed the event: Kong answers 500.
      const text = JSON.stringify({ message: KONG_ERROR_MESSAGES[500] });
      res.writeHead(500, { 'content-type': JSON_UTF8, 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    if (access.exited) {
      const headers: Record<string, string> = {};
      const given = (access.exited.headers as Record<string, string> | undefined) ?? {};
      for (const name of Object.keys(given)) headers[name.toLowerCase()] = String(given[name]);
      const exitText = exitBody(access.exited.body);
      if (typeof access.exited.body === 'object' && access.exited.body !== null && !(access.exited.body instanceof Uint8Array) && headers['content-type'] === undefined) headers['content-type'] = JSON_UTF8;
      headers['x-kong-response-latency'] = String(Math.round(kongMs));
      Object.assign(headers, state.responseHeaders);
      res.writeHead(access.exited.status, Object.assign({ 'content-length': String(Buffer.byteLength(exitText)) }, headers));
      res.end(exitText);
      await logPhase(side, state, handlers, null, { status: access.exited.status, headers, bodyBytes: Buffer.byteLength(exitText) }, kongMs);
      return;
    }
    const target = state.target;
    if (target === null) {
      // Kong would proxy to the Service's host; this gateway has none (fail-open is visible as 502).
      note('access: the plugin set no target');
    }
    const exchange = await proxyStreaming(state, target, res, { retries: state.retries ?? serviceRetries, kongMs });
    await logPhase(side, state, handlers, exchange.summary, exchange.response, kongMs);
  };

  /**
   * Sends the request to the target and streams the response to the client as it arrives, as
   * Kong's nginx does with the timeouts in force (set_timeouts, else the Service's):
   *   connect_timeout  until the connection to the replica is up (a reused keepalive one is)
   *   read_timeout     between two reads: before the response headers, and between body chunks
   * A try that fails before the headers (refused, reset, timed out) is retried on the SAME target
   * while retries (set_retries, else the Service's) allow; then the client gets Kong's 502 or 504
   * with the error handler's {"message"} body. A read timeout after the headers cuts the client
   * connection (the status already went out). Kong writes a try's failure (state, code) only when
   * it starts the next try, so the last try never carries one; $upstream_status lists nginx's own
   * 502/504 per failed try. Resolves once the exchange is over.
   */
  const proxyStreaming = (
    state: FakeRequestState,
    target: { host: string; port: number } | null,
    res: http.ServerResponse,
    settings: { retries: number; kongMs: number },
  ): Promise<{ summary: ExchangeSummary; response: { status: number; headers: Record<string, string>; bodyBytes: number } }> => {
    const sentAt = performance.now();
    const tries: KongTry[] = [];
    const statuses: number[] = [];
    const fail = (status: number, message: string): { summary: ExchangeSummary; response: { status: number; headers: Record<string, string>; bodyBytes: number } } => {
      const text = status === 499 ? '' : JSON.stringify({ message });
      const headers: Record<string, string> = status === 499 ? {} : { 'content-type': JSON_UTF8 };
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(status, Object.assign({ 'content-length': String(Buffer.byteLength(text)) }, headers));
        res.end(text);
      }
      return { summary: { upstreamStatus: null, upstreamStatuses: statuses, ttfbMs: -1, totalMs: performance.now() - sentAt, tries }, response: { status, headers, bodyBytes: Buffer.byteLength(text) } };
    };
    if (target === null) return Promise.resolve(fail(502, 'no target: the plugin set none and this gateway has no Service host'));
    if (target.host !== '127.0.0.1' && target.host !== 'localhost') return Promise.resolve(fail(503, 'name resolution failed'));
    const limits = upstreamTimeouts(state);
    const up = state.upstream;
    const headers: Record<string, string> = {};
    for (const name of Object.keys(up.headers)) if (!HOP_BY_HOP.has(name) && name !== 'content-length') headers[name] = up.headers[name];
    headers.host = `${target.host}:${target.port}`;
    headers['x-forwarded-for'] = state.request.clientIp;
    headers['x-real-ip'] = state.request.clientIp;
    if (up.body !== undefined) headers['content-length'] = String(Buffer.byteLength(up.body));

    return new Promise((resolve) => {
      let clientGone = false;
      res.once('close', () => {
        if (!res.writableFinished) clientGone = true;
      });
      const attempt = (): void => {
        if (tries.length > 0) markRetriedTry(tries, statuses[statuses.length - 1] === 504 ? 504 : 502);
        tries.push({ ip: '127.0.0.1', port: target.port, balancer_latency: 0, balancer_start: Date.now() });
        let answered = false;
        let settled = false;
        let silence: ReturnType<typeof setTimeout> | null = null;
        const req = http.request({ host: '127.0.0.1', port: target.port, method: up.method, path: up.path + queryString(up.query), headers, agent });
        const quiet = (): void => {
          if (silence !== null) clearTimeout(silence);
          silence = null;
        };
        const onClientClose = (): void => {
          if (res.writableFinished) return;
          quiet();
          req.destroy();
          if (!answered && !settled) {
            settled = true;
            resolve(fail(499, ''));
          }
        };
        /** The try failed before any response byte: retry on the same target, or answer Kong's error. */
        const tryFailed = (code: 502 | 504, detail: string): void => {
          if (answered || settled) return;
          settled = true;
          quiet();
          res.off('close', onClientClose);
          req.destroy();
          statuses.push(code);
          if (clientGone) return resolve(fail(499, ''));
          if (tries.length > settings.retries) return resolve(fail(code, KONG_PROXY_ERROR_MESSAGES[code] + (detail ? ` (${detail})` : '')));
          attempt();
        };
        let onSilence = (): void => tryFailed(504, '');
        const expectWithin = (ms: number): void => {
          quiet();
          silence = setTimeout(() => onSilence(), ms);
        };
        res.once('close', onClientClose);
        // connect_timeout covers a new connection; a reused keepalive socket is already connected.
        req.on('socket', (socket) => {
          if (!socket.connecting) return expectWithin(limits.readMs);
          expectWithin(limits.connectMs);
          socket.once('connect', () => expectWithin(limits.readMs));
        });
        req.on('error', (error) => tryFailed(502, error.message));
        req.on('response', (upstream) => {
          answered = true;
          settled = true;
          const ttfbMs = performance.now() - sentAt;
          const status = upstream.statusCode ?? 502;
          statuses.push(status);
          const out = flatHeaders(upstream.headers);
          out['x-kong-upstream-latency'] = String(Math.round(ttfbMs));
          out['x-kong-proxy-latency'] = String(Math.round(settings.kongMs));
          Object.assign(out, state.responseHeaders);
          let bodyBytes = 0;
          let over = false;
          const done = (): void => {
            if (over) return;
            over = true;
            quiet();
            res.off('close', onClientClose);
            resolve({ summary: { upstreamStatus: status, upstreamStatuses: statuses, ttfbMs, totalMs: performance.now() - sentAt, tries }, response: { status, headers: out, bodyBytes } });
          };
          if (clientGone) {
            upstream.destroy();
            return done();
          }
          res.writeHead(status, out);
          // nginx sends the response header as soon as it has processed the replica's (an SSE
          // client sees its 200 before the first token); Node would hold it until the first write.
          res.flushHeaders();
          // read_timeout between body chunks: nginx gives up on the replica and, the status being
          // out already, closes the client connection mid-body.
          onSilence = () => {
            upstream.destroy();
            req.destroy();
            res.destroy();
            done();
          };
          expectWithin(limits.readMs);
          // Each chunk goes out as it arrives (SSE tokens): no buffering between replica and client.
          upstream.on('data', (chunk: Buffer) => {
            bodyBytes += chunk.length;
            expectWithin(limits.readMs);
            res.write(chunk);
          });
          upstream.on('end', () => {
            res.end();
            done();
          });
          // The replica reset the stream (or the client left and the request was destroyed): the
          // client's connection is cut too, as nginx does once the headers went out.
          upstream.on('error', () => undefined);
          upstream.on('close', () => {
            if (over) return;
            if (!upstream.complete) res.destroy();
            done();
          });
        });
        req.end(up.body);
      };
      attempt();
    });
  };

  // Requests whose exchange or log phase is still running: stop() lets them finish.
  const pending = new Set<Promise<void>>();
  const httpServer = http.createServer((req, res) => {
    const work = handle(req, res)
      .catch((error: unknown) => {
        note(`gateway: ${error instanceof Error ? error.message : String(error)}`);
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': JSON_UTF8 });
          res.end(JSON.stringify({ message: KONG_ERROR_MESSAGES[500] }));
        } else res.destroy();
      })
      .finally(() => {
        handled++;
        pending.delete(work);
      });
    pending.add(work);
  });
  // Kong's nginx: keepalive_timeout 75 s for client connections (stop() closes them all).
  httpServer.keepAliveTimeout = 75_000;
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (httpServer.address() as AddressInfo).port;

  let stopped: Promise<void> | null = null;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    errors: () => errors.slice(),
    handled: () => handled,
    stop() {
      stopped ??= (async () => {
        const closed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
        // Idle keepalive connections go now; requests still streaming end with their replica
        // (bounded: at most STOP_GRACE_MS), then their log phases run before the RPC closes.
        httpServer.closeIdleConnections();
        const grace = new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref());
        await Promise.race([Promise.all([...pending]), grace]);
        httpServer.closeAllConnections();
        await Promise.race([Promise.all([...pending]), new Promise<void>((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref())]);
        await closed;
        agent.destroy();
        for (const rpc of rpcs) rpc.close();
        await server.stop();
      })();
      return stopped;
    },
  };
}
