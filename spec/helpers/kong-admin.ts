// A fake Kong Admin API for the Kong integration specs: one upstream whose targets, weights and
// health the test changes at will, served in Kong 3.x's shapes (GET /upstreams/{u}/targets and
// /upstreams/{u}/health, paginated with `next`, newest first), on a free 127.0.0.1 port. It can
// fail (HTTP 500) or hang, and counts reads so a spec can wait for the plugin's next refresh
// instead of sleeping.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type KongHealth = 'HEALTHY' | 'UNHEALTHY' | 'HEALTHCHECKS_OFF' | 'DNS_ERROR';

export interface FakeTarget {
  target: string;
  weight: number;
  health: KongHealth;
}

export interface FakeKongAdmin {
  readonly url: string;
  readonly upstream: string;
  /** Completed reads of /targets (all pages of one read count once: the last page). */
  readonly targetReads: number;
  /** Tokens seen in Kong-Admin-Token headers, in order. */
  readonly tokens: Array<string | undefined>;
  targets: FakeTarget[];
  mode: 'ok' | 'error' | 'hang';
  /** Resolves once `count` more complete target reads have been served (bounded). */
  nextReads(count: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

// Two per page: a four-target upstream takes two pages, so the plugin's pagination is exercised.
const PAGE_SIZE = 2;

export async function startFakeKongAdmin(upstream: string, targets: FakeTarget[]): Promise<FakeKongAdmin> {
  let targetReads = 0;
  const tokens: Array<string | undefined> = [];
  const sockets = new Set<Socket>();
  const waiters: Array<{ at: number; resolve: () => void }> = [];
  const state = { targets: targets.slice(), mode: 'ok' as FakeKongAdmin['mode'] };

  function page(rows: unknown[], offset: number, base: string, kind: string): { data: unknown[]; next: string | null; offset?: string } {
    const slice = rows.slice(offset, offset + PAGE_SIZE);
    const more = offset + PAGE_SIZE < rows.length;
    return more
      ? { data: slice, next: `/upstreams/${encodeURIComponent(upstream)}/${kind}?offset=${offset + PAGE_SIZE}`, offset: String(offset + PAGE_SIZE) }
      : { data: slice, next: null };
  }

  const server = http.createServer((req, res) => {
    tokens.push(req.headers['kong-admin-token'] as string | undefined);
    if (state.mode === 'hang') return; // never answers; close() destroys the socket
    if (state.mode === 'error') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"message":"An unexpected error occurred"}');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://admin');
    const offset = Number(url.searchParams.get('offset') ?? '0');
    const prefix = `/upstreams/${encodeURIComponent(upstream)}/`;
    // Newest first, like Kong: the list as the test set it, reversed.
    const newestFirst = state.targets.slice().reverse();
    const base = { upstream: { id: 'u-1' }, created_at: 1700000000, updated_at: 1700000000, tags: null };
    if (url.pathname === prefix + 'targets') {
      const rows = newestFirst.map((t, i) => ({ ...base, id: 't-' + i, target: t.target, weight: t.weight }));
      const body = page(rows, offset, prefix, 'targets');
      if (body.next === null) {
        targetReads++;
        for (const w of waiters.splice(0)) {
          if (targetReads >= w.at) w.resolve();
          else waiters.push(w);
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
      return;
    }
    if (url.pathname === prefix + 'health') {
      const rows = newestFirst.map((t, i) => {
        const [host, port] = t.target.split(':');
        return {
          ...base,
          id: 't-' + i,
          target: t.target,
          weight: t.weight,
          health: t.health,
          data: { host, port: Number(port), dns: 'A', nodeWeight: t.weight, weight: { total: t.weight, available: t.health === 'UNHEALTHY' ? 0 : t.weight, unavailable: 0 }, addresses: [{ ip: host, port: Number(port), weight: t.weight, health: t.health }] },
        };
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ node_id: 'node-1', ...page(rows, offset, prefix, 'health') }));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"message":"Not found"}');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    upstream,
    get targetReads() {
      return targetReads;
    },
    tokens,
    get targets() {
      return state.targets;
    },
    set targets(value: FakeTarget[]) {
      state.targets = value.slice();
    },
    get mode() {
      return state.mode;
    },
    set mode(value: FakeKongAdmin['mode']) {
      state.mode = value;
    },
    nextReads(count: number, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the plugin did not read the fake Admin API ${count} more time(s) within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          at: targetReads + count,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
