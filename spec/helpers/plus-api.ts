// A fake NGINX Plus API for the nginx integration specs (we have no NGINX Plus): a Node HTTP server
// on a free port of 127.0.0.1 answering GET <base>/http/upstreams/<name> with the documented JSON
// of the upstream (API version 9, shared/GATEWAY-FACTS.md): {peers: [{id, server, name, backup,
// weight, state, active, max_conns, requests, responses{1xx..5xx, codes, total}, sent, received,
// fails, unavail, health_checks{checks, fails, unhealthy, last_passed}, downtime, selected,
// header_time, response_time}], keepalive, zombies, zone}. Tests set the peers per upstream and
// can make it fail: HTTP 500, malformed JSON, or hang (never answer).
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type PeerState = 'up' | 'draining' | 'down' | 'unavail' | 'checking' | 'unhealthy';

/** What a test sets per peer; everything else gets plausible documented values. */
export interface PeerSpec {
  server: string;
  weight?: number;
  state?: PeerState;
  backup?: boolean;
  /** The server name as written in the configuration (defaults to `server`). */
  name?: string;
}

/** none: serve the document; 500: HTTP 500 with Plus's error JSON; malformed: 200 with a broken body; hang: never answer. */
export type FailureMode = 'none' | 500 | 'malformed' | 'hang';

export interface FakePlusApi {
  /** The API base as nginx.plus_api.url wants it: http://127.0.0.1:<port>/api/9 */
  readonly url: string;
  /** Requests to /http/upstreams/<name> received (answered or not). */
  readonly requests: number;
  /** Requests that were answered with the document (status 200, valid JSON). */
  readonly served: number;
  /** Paths requested, in order (the last 100). */
  readonly paths: string[];
  /** Upstream requests received per failure mode in effect when they arrived ('none': answered normally, 404 included). */
  byMode(): Record<string, number>;
  setPeers(upstream: string, peers: PeerSpec[]): void;
  /** The JSON document currently served for `upstream` (null: 404). */
  document(upstream: string): Record<string, unknown> | null;
  failWith(mode: FailureMode): void;
  /** Stops listening and destroys every connection (hung requests included). */
  close(): Promise<void>;
}

/** One peer in the documented shape. */
export function documentedPeer(id: number, spec: PeerSpec): Record<string, unknown> {
  const state = spec.state ?? 'up';
  return {
    id,
    server: spec.server,
    name: spec.name ?? spec.server,
    backup: spec.backup ?? false,
    weight: spec.weight ?? 1,
    state,
    active: 0,
    max_conns: 0,
    requests: 42,
    responses: { '1xx': 0, '2xx': 40, '3xx': 0, '4xx': 1, '5xx': 1, codes: { '200': 40, '404': 1, '503': 1 }, total: 42 },
    sent: 21000,
    received: 84000,
    fails: state === 'up' ? 0 : 3,
    unavail: state === 'unavail' ? 1 : 0,
    health_checks: { checks: 10, fails: state === 'unhealthy' ? 3 : 0, unhealthy: state === 'unhealthy' ? 1 : 0, last_passed: state !== 'unhealthy' },
    downtime: state === 'up' ? 0 : 1500,
    selected: '2024-05-01T12:00:00Z',
    header_time: 12,
    response_time: 340,
  };
}

export async function startFakePlusApi(): Promise<FakePlusApi> {
  const upstreams = new Map<string, PeerSpec[]>();
  let mode: FailureMode = 'none';
  let requests = 0;
  let served = 0;
  const paths: string[] = [];
  const modeCounts: Record<string, number> = { none: 0, '500': 0, malformed: 0, hang: 0 };
  const sockets = new Set<Socket>();
  const prefix = '/api/9/http/upstreams/';

  function document(upstream: string): Record<string, unknown> | null {
    const peers = upstreams.get(upstream);
    if (!peers) return null;
    return { peers: peers.map((p, i) => documentedPeer(i, p)), keepalive: 0, zombies: 0, zone: upstream };
  }

  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    paths.push(url);
    if (paths.length > 100) paths.shift();
    if (req.method !== 'GET' || !url.startsWith(prefix)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { status: 404, text: 'path not found', code: 'PathNotFound' }, request_id: 'fake', href: 'https://nginx.org/en/docs/http/ngx_http_api_module.html' }));
      return;
    }
    requests++;
    modeCounts[String(mode)]++;
    if (mode === 'hang') return;
    if (mode === 500) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { status: 500, text: 'internal error', code: 'InternalError' }, request_id: 'fake' }));
      return;
    }
    if (mode === 'malformed') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"peers": [{"id": 0, "server": "127.0.0.1:1"');
      return;
    }
    const name = decodeURIComponent(url.slice(prefix.length).split('?')[0]);
    const doc = document(name);
    if (doc === null) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { status: 404, text: 'upstream not found', code: 'UpstreamNotFound' }, request_id: 'fake' }));
      return;
    }
    served++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(doc));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed = false;

  return {
    url: `http://127.0.0.1:${port}/api/9`,
    get requests() {
      return requests;
    },
    get served() {
      return served;
    },
    get paths() {
      return paths.slice();
    },
    byMode() {
      return Object.assign({}, modeCounts);
    },
    setPeers(upstream, peers) {
      upstreams.set(upstream, peers.map((p) => Object.assign({}, p)));
    },
    document,
    failWith(next) {
      mode = next;
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        server.closeAllConnections();
      });
    },
  };
}
