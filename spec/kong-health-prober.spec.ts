// The Kong plugin server's own active health checks (plugins/kong/health-prober.ts) against local
// HTTP servers standing in for replicas, feeding the core's recordProbe through a real memory
// store: a replica is marked down after unhealthy_threshold failed probes (refused, 5xx, no
// answer within the timeout) and up again after healthy_threshold passes; 2xx and 3xx pass; one
// log line per failure streak naming the replica and its address, one on recovery; rounds never
// overlap; the list is asked again each round; a stopped prober records nothing. Rounds are driven
// with probeNow() under an interval that never fires inside a test.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runningHealthProbers, startHealthProber, stopAllHealthProbers } from '../plugins/kong/health-prober';
import type { HealthProberOptions } from '../plugins/kong/health-prober';
import { activelyUnhealthy, recordProbe } from '../shared/health/active';
import { createMemoryStore } from '../shared/memory-store';
import { keysOf } from '../shared/replica-state';
import type { Replica, Store } from '../shared/types';

/** The timer never fires inside a test at this interval: rounds are driven with probeNow(). */
const QUIET_MS = 60_000;

interface FakeReplica {
  replica: Replica;
  paths: string[];
  /** ok: 200; redirect: 302; error: 503; hang: never answers (until close). */
  mode: 'ok' | 'redirect' | 'error' | 'hang';
  close(): Promise<void>;
  /** Listens again on the same port (a restarted replica). */
  restart(): Promise<void>;
}

const opened: FakeReplica[] = [];

async function fakeReplica(id: string): Promise<FakeReplica> {
  const sockets = new Set<Socket>();
  let server: http.Server;
  let port = 0;
  const listen = async (): Promise<void> => {
    server = http.createServer((req, res) => {
      fake.paths.push(req.url ?? '');
      if (fake.mode === 'hang') return;
      const status = fake.mode === 'ok' ? 200 : fake.mode === 'redirect' ? 302 : 503;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end('{}');
    });
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  };
  await listen();
  const fake: FakeReplica = {
    replica: { id, address: '127.0.0.1:' + port, weight: 1 },
    paths: [],
    mode: 'ok',
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
    restart: listen,
  };
  opened.push(fake);
  return fake;
}

afterEach(async () => {
  stopAllHealthProbers();
  for (const fake of opened.splice(0)) await fake.close().catch(() => undefined);
});

const thresholds = { healthyThreshold: 2, unhealthyThreshold: 3 };

function setup(replicas: Replica[] | (() => Replica[]), extra: Partial<HealthProberOptions> = {}) {
  const store: Store = createMemoryStore();
  const lines: string[] = [];
  const options: HealthProberOptions = {
    path: '/health',
    intervalMs: QUIET_MS,
    timeoutMs: 500,
    replicas: typeof replicas === 'function' ? replicas : () => replicas,
    record: (id, passed) => recordProbe(store, id, passed, thresholds, Date.now()),
    ...extra,
  };
  const prober = startHealthProber(options, (line) => lines.push(line));
  const down = (id: string) => activelyUnhealthy(store, keysOf(id));
  return { store, lines, prober, down };
}

describe('the Kong plugin server\'s active health checks', () => {
  it('marks a replica down after unhealthy_threshold failed probes and up after healthy_threshold passes, logging once each way', async () => {
    const a = await fakeReplica('a');
    const b = await fakeReplica('b');
    const { lines, prober, down } = setup([a.replica, b.replica]);
    await prober.probeNow(); // the round started at start-up (joined)
    expect(a.paths).toEqual(['/health']);
    b.mode = 'error';
    await prober.probeNow();
    await prober.probeNow();
    expect(down('b')).toBe(false); // two failures: under the threshold of 3
    await prober.probeNow();
    expect(down('b')).toBe(true);
    expect(down('a')).toBe(false);
    await prober.probeNow(); // a fourth failure: no new line
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('replica b (' + b.replica.address + ')');
    expect(lines[0]).toContain('HTTP 503');
    b.mode = 'redirect'; // 3xx passes
    await prober.probeNow();
    expect(down('b')).toBe(true); // one pass: under healthy_threshold 2
    await prober.probeNow();
    expect(down('b')).toBe(false);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toContain('replica b (' + b.replica.address + ') passes again after 4 failed probes');
  });

  it('counts a refused connection and a probe unanswered within the timeout as failures', async () => {
    const refused = await fakeReplica('refused');
    await refused.close();
    const silent = await fakeReplica('silent');
    silent.mode = 'hang';
    const { lines, prober, down } = setup([refused.replica, silent.replica], { timeoutMs: 150 });
    for (let i = 0; i < 3; i++) await prober.probeNow();
    expect(down('refused')).toBe(true);
    expect(down('silent')).toBe(true);
    expect(lines.find((l) => l.includes('replica silent'))).toContain('no answer within 150 ms');
    expect(lines.filter((l) => l.includes('replica refused'))).toHaveLength(1);
    // Restarted on the same port: back after two passes.
    await refused.restart();
    await prober.probeNow();
    await prober.probeNow();
    expect(down('refused')).toBe(false);
  });

  it('never runs two rounds at once: a hanging probe holds its round until the timeout', async () => {
    const slow = await fakeReplica('slow');
    slow.mode = 'hang';
    const { prober } = setup([slow.replica], { timeoutMs: 300 });
    const first = prober.probeNow();
    const second = prober.probeNow();
    expect(second).toBe(first);
    await first;
    expect(slow.paths).toHaveLength(1);
  });

  it('asks for the replicas at each round and forgets the streak of a removed one', async () => {
    const a = await fakeReplica('a');
    const b = await fakeReplica('b');
    let list = [a.replica];
    const { lines, prober } = setup(() => list);
    await prober.probeNow();
    list = [a.replica, b.replica];
    await prober.probeNow();
    expect(b.paths).toEqual(['/health']);
    expect(a.paths).toHaveLength(2);
    b.mode = 'error';
    await prober.probeNow();
    list = [a.replica];
    await prober.probeNow();
    b.mode = 'ok';
    list = [a.replica, b.replica];
    await prober.probeNow();
    // Removed and re-added: no "passes again" line for a streak it no longer has.
    expect(lines.filter((l) => l.includes('passes again'))).toEqual([]);
  });

  it('a stopped prober neither records nor logs, and is no longer running', async () => {
    const a = await fakeReplica('a');
    a.mode = 'hang';
    const recorded: string[] = [];
    const lines: string[] = [];
    const prober = startHealthProber(
      { path: '/health', intervalMs: QUIET_MS, timeoutMs: 200, replicas: () => [a.replica], record: (id) => (recorded.push(id), true) },
      (line) => lines.push(line),
    );
    expect(runningHealthProbers()).toBe(1);
    const round = prober.probeNow();
    prober.stop();
    await round;
    expect(recorded).toEqual([]);
    expect(lines).toEqual([]);
    expect(runningHealthProbers()).toBe(0);
  });

  it('probes by itself every interval', async () => {
    const a = await fakeReplica('a');
    const { prober } = setup([a.replica], { intervalMs: 50 });
    await prober.probeNow();
    await expect.poll(() => a.paths.length, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
  });
});
