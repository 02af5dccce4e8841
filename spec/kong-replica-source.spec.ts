// The background replica source against nock: it serves the last good read from memory, keeps it
// through failures, is shared between plugin instances, never runs two reads at once, and writes
// one log line per failing interval rather than one per read.
import nock from 'nock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { replicaSourceFor, stopAllReplicaSources } from '../plugins/kong/replica-source';
import type { ReplicaSourceOptions } from '../plugins/kong/replica-source';

const ADMIN = 'http://kong-admin.test:8001';
/** The timer never fires inside a test at this interval: reads are driven with refreshNow(). */
const QUIET: ReplicaSourceOptions = { adminUrl: ADMIN, upstream: 'llm', token: null, timeoutMs: 2000, intervalMs: 60_000 };

function targetsPage(addresses: string[]): Record<string, unknown> {
  return {
    data: addresses.map((address, i) => ({ id: 'id-' + i, created_at: 1, updated_at: 1, upstream: { id: 'u' }, target: address, weight: 100, tags: null })),
    next: null,
  };
}

/** Kong answering one full read (targets, then health) with these targets, all healthy. */
function kongServes(addresses: string[]): nock.Scope {
  return nock(ADMIN)
    .get('/upstreams/llm/targets')
    .query(true)
    .reply(200, targetsPage(addresses))
    .get('/upstreams/llm/health')
    .query(true)
    .reply(200, { node_id: 'n', data: [], next: null });
}

/** Kong refusing one read. */
function kongFails(status = 500): nock.Scope {
  return nock(ADMIN).get('/upstreams/llm/targets').query(true).reply(status, { message: 'An unexpected error occurred' });
}

function collectLog(): { lines: string[]; log: (message: string) => void } {
  const lines: string[] = [];
  return { lines, log: (message: string) => lines.push(message) };
}

beforeEach(() => {
  nock.disableNetConnect();
});

afterEach(() => {
  stopAllReplicaSources();
  vi.useRealTimers();
  vi.restoreAllMocks();
  nock.cleanAll();
  nock.enableNetConnect();
});

describe('replicaSourceFor', () => {
  it('reads at once: current() is null until the first read lands, then holds it', async () => {
    kongServes(['10.0.0.1:8000', '10.0.0.2:8000']);
    const before = Date.now();
    const source = replicaSourceFor(QUIET, collectLog().log);
    expect(source.current()).toBeNull();
    // No refreshNow(): the read started by replicaSourceFor itself lands.
    await vi.waitFor(() => expect(source.current()).not.toBeNull(), { timeout: 5000, interval: 5 });
    const snapshot = source.current();
    expect(snapshot && snapshot.replicas.map((r) => r.id)).toEqual(['10.0.0.1:8000', '10.0.0.2:8000']);
    expect(snapshot!.readAt).toBeGreaterThanOrEqual(before);
    expect(snapshot!.readAt).toBeLessThanOrEqual(Date.now());
    expect(source.lastError()).toBeNull();
  });

  it('keeps the last good snapshot through a failure, and a success clears the error', async () => {
    const { lines, log } = collectLog();
    kongServes(['10.0.0.1:8000']);
    const source = replicaSourceFor(QUIET, log);
    await source.refreshNow();
    const good = source.current();

    kongFails(500);
    await source.refreshNow();
    expect(source.current()).toBe(good);
    expect(source.lastError()).toBe('GET /upstreams/llm/targets: HTTP 500 (An unexpected error occurred)');
    expect(lines).toEqual([
      'llm-balancer: Kong Admin API read of upstream "llm" failed (keeping the replicas read at ' +
        new Date(good!.readAt).toISOString() + '): GET /upstreams/llm/targets: HTTP 500 (An unexpected error occurred)',
    ]);

    kongServes(['10.0.0.1:8000', '10.0.0.3:8000']);
    await source.refreshNow();
    expect(source.lastError()).toBeNull();
    expect(source.current()!.replicas.map((r) => r.id)).toEqual(['10.0.0.1:8000', '10.0.0.3:8000']);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('llm-balancer: Kong Admin API read of upstream "llm" recovered after 1 failed read: 2 targets');
  });

  it('a failure before any success says the static replicas are in use', async () => {
    const { lines, log } = collectLog();
    kongFails(401);
    const source = replicaSourceFor(QUIET, log);
    await source.refreshNow();
    expect(source.current()).toBeNull();
    expect(source.lastError()).toMatch(/HTTP 401/);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^llm-balancer: Kong Admin API read of upstream "llm" failed \(using the plugin's static replicas\): GET /);
  });

  it('an upstream without targets is a success with an empty list', async () => {
    kongServes([]);
    const source = replicaSourceFor(QUIET, collectLog().log);
    await source.refreshNow();
    expect(source.current()!.replicas).toEqual([]);
    expect(source.lastError()).toBeNull();
  });

  it('logs to console.warn by default (the plugin server sends stderr to Kong\'s error log)', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    kongFails(500);
    await replicaSourceFor(QUIET).refreshNow();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/^llm-balancer: Kong Admin API read of upstream "llm" failed/);
  });
});

describe('sharing', () => {
  it('the same options give the same source; any different option gives another', async () => {
    const source = replicaSourceFor(QUIET, collectLog().log);
    expect(replicaSourceFor({ ...QUIET }, collectLog().log)).toBe(source);
    expect(replicaSourceFor({ ...QUIET, upstream: 'other' }, collectLog().log)).not.toBe(source);
    expect(replicaSourceFor({ ...QUIET, adminUrl: 'http://elsewhere.test:8001' }, collectLog().log)).not.toBe(source);
    expect(replicaSourceFor({ ...QUIET, token: 't' }, collectLog().log)).not.toBe(source);
    expect(replicaSourceFor({ ...QUIET, intervalMs: 5000 }, collectLog().log)).not.toBe(source);
  });

  it('a read in flight when the source stops changes nothing and logs nothing', async () => {
    const { lines, log } = collectLog();
    nock(ADMIN).get('/upstreams/llm/targets').query(true).delay(100).reply(500, { message: 'late' });
    const source = replicaSourceFor(QUIET, log);
    const inFlight = source.refreshNow();
    source.stop();
    await inFlight;
    expect(source.lastError()).toBeNull();
    expect(lines).toEqual([]);
  });

  it('a stopped source is forgotten and reads no more', async () => {
    const source = replicaSourceFor(QUIET, collectLog().log);
    await source.refreshNow(); // the first read fails: no interceptor, no network
    source.stop();
    const scope = kongServes(['10.0.0.1:8000']);
    await source.refreshNow();
    expect(scope.isDone()).toBe(false);
    expect(replicaSourceFor(QUIET, collectLog().log)).not.toBe(source);
  });
});

describe('reads', () => {
  it('never overlap: refreshNow() during a slow read joins it', async () => {
    let targetRequests = 0;
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query(true)
      .times(3)
      .delay(200)
      .reply(() => {
        targetRequests++;
        return [200, targetsPage(['10.0.0.1:8000'])];
      })
      .get('/upstreams/llm/health')
      .query(true)
      .times(3)
      .reply(200, { data: [], next: null });
    const source = replicaSourceFor(QUIET, collectLog().log);
    await Promise.all([source.refreshNow(), source.refreshNow()]);
    expect(targetRequests).toBe(1);
    expect(source.current()!.replicas).toHaveLength(1);
  });

  it('the timer does not start a second read while one is running, and keeps reading after it', async () => {
    let targetRequests = 0;
    nock(ADMIN)
      .get('/upstreams/llm/targets')
      .query(true)
      .delay(200)
      .reply(() => {
        targetRequests++;
        return [500, { message: 'slow and broken' }];
      })
      .get('/upstreams/llm/targets')
      .query(true)
      .reply(200, targetsPage(['10.0.0.9:8000']))
      .get('/upstreams/llm/health')
      .query(true)
      .reply(200, { data: [], next: null });
    // The 30 ms timer fires several times during the 200 ms first read.
    const source = replicaSourceFor({ ...QUIET, intervalMs: 30 }, collectLog().log);
    await source.refreshNow();
    expect(targetRequests).toBe(1);
    expect(source.lastError()).toMatch(/HTTP 500/);
    // Then a timer tick (not refreshNow) brings the next, successful read.
    await vi.waitFor(() => expect(source.current()).not.toBeNull(), { timeout: 5000, interval: 10 });
    expect(source.current()!.replicas.map((r) => r.id)).toEqual(['10.0.0.9:8000']);
  });
});

describe('logging', () => {
  it('writes one line per failing interval, however many reads fail in it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { lines, log } = collectLog();
    kongFails(500).get('/upstreams/llm/targets').query(true).times(2).reply(503, { message: 'busy' });
    const source = replicaSourceFor(QUIET, log);
    await source.refreshNow();
    await source.refreshNow();
    await source.refreshNow();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/HTTP 500/);

    // One interval later the still-failing source speaks again, with the latest error.
    vi.setSystemTime(Date.now() + QUIET.intervalMs);
    kongFails(502);
    await source.refreshNow();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/HTTP 502/);

    // Recovery is one line, counting every failed read.
    kongServes(['10.0.0.1:8000']);
    await source.refreshNow();
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('llm-balancer: Kong Admin API read of upstream "llm" recovered after 4 failed reads: 1 target');
  });
});
