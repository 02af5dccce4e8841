// What the error log says about active health checks, in real nginx: a replica down for several
// probe intervals is ONE warn line naming its id and address and why, its recovery ONE info line,
// and nginx's own per-probe lines ("recv() failed (111: Connection refused)", naming no replica)
// do not appear at all. Plus the pure parts: the pending-change encoding and the line texts.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NO_ANSWER, NO_CONNECTION, PENDING, describeFailure, nextPending, reportLines } from '../plugins/nginx/health-check';
import { validate } from '../shared/config/validate';
import { startBackends } from './helpers/backends';
import type { Backends } from './helpers/backends';
import { createFleet, replicasOf } from './helpers/fleet';
import { readStatus, waitFor } from './helpers/nginx-balancer';

describe('the pending log of a replica (pure)', () => {
  it.each([
    [undefined, true, PENDING.down],
    [undefined, false, PENDING.up],
    [PENDING.down, false, PENDING.downUp],
    [PENDING.up, true, PENDING.upDown],
    [PENDING.downUp, true, PENDING.down],
    [PENDING.upDown, false, PENDING.up],
  ])('pending %j, then down=%s: %j', (pending, down, next) => {
    expect(nextPending(pending, down)).toBe(next);
  });

  const active = (() => {
    const checked = validate({ active_health: { enabled: true, path: '/health', interval_s: 5, timeout_s: 2, unhealthy_threshold: 3, healthy_threshold: 2 } });
    if (!checked.ok) throw new Error('bad test config');
    return checked.config.active_health;
  })();
  const replica = { id: 'gpu-1', address: '10.0.0.7:8000', weight: 1 };

  it.each([
    [NO_CONNECTION, 'GET /health could not connect'],
    [NO_ANSWER, 'GET /health gave no answer within 2000 ms'],
    [503, 'GET /health answered 503'],
    [undefined, 'GET /health failed'],
  ])('failure %j reads "%s"', (result, words) => {
    expect(describeFailure(result, '/health', 2000)).toBe(words);
  });

  it('lines name the replica, its address and why; one per change, in order', () => {
    const down = reportLines(replica, PENDING.down, NO_CONNECTION, 1_000, 61_000, active);
    expect(down).toEqual([['warn', 'llm-balancer: active check: replica gpu-1 (10.0.0.7:8000) is unhealthy after 3 failed probes in a row (last: GET /health could not connect); no traffic until 2 pass']]);
    const up = reportLines(replica, PENDING.up, NO_CONNECTION, 1_000, 61_000, active);
    expect(up).toEqual([['info', 'llm-balancer: active check: replica gpu-1 (10.0.0.7:8000) is healthy again after 60 s (2 passed probes)']]);
    expect(reportLines(replica, PENDING.downUp, 500, 1_000, 61_000, active).map((l) => l[0])).toEqual(['warn', 'info']);
    expect(reportLines(replica, PENDING.upDown, 500, 1_000, 61_000, active).map((l) => l[0])).toEqual(['info', 'warn']);
  });
});

describe('active-check log lines in real nginx', () => {
  let backends: Backends;
  const fleet = createFleet('health-log');
  beforeAll(async () => {
    backends = await startBackends(2);
  });
  afterEach(async () => {
    expect(await fleet.stopAll()).toEqual([]);
  });
  afterAll(async () => {
    await backends?.close();
  });

  it('a replica down for several intervals: one warn line with id, address and why; recovery: one info line; no per-probe nginx lines', async () => {
    const [dead, alive] = backends.list;
    const lb = await fleet.start(
      {
        strategy: 'least-connections',
        replicas: replicasOf(backends.list),
        active_health: { enabled: true, interval_s: 1, timeout_s: 0.5, unhealthy_threshold: 2, healthy_threshold: 1 },
      },
      { errorLogLevel: 'info' },
    );
    await dead.kill();
    const stateOf = async (id: string) => (await readStatus(lb)).replicas.find((r) => r.id === id)?.state;
    await waitFor('the dead replica marked unhealthy', async () => (await stateOf(dead.name)) === 'unhealthy', 10_000);
    // Several more probe intervals of refused connections.
    const probesBefore = alive.healthChecks;
    await waitFor('four more probe beats', () => alive.healthChecks >= probesBefore + 4, 10_000);
    const log = () => lb.nginx.stderr().split('\n');
    const about = (level: string) => log().filter((l) => l.includes(`[${level}]`) && l.includes('active check: replica ' + dead.name));
    expect(about('warn')).toHaveLength(1);
    expect(about('warn')[0]).toContain(`replica ${dead.name} (${dead.address}) is unhealthy after 2 failed probes in a row (last: GET /health could not connect)`);
    // nginx's own line for each refused probe ("recv() failed (111: Connection refused)") is gone.
    expect(log().filter((l) => /recv\(\) failed|connect\(\) failed|Connection refused/.test(l))).toEqual([]);

    await dead.restart();
    await waitFor('the replica healthy again', async () => (await stateOf(dead.name)) === 'healthy', 10_000);
    await waitFor('the recovery line', () => about('info').length > 0, 5_000);
    const checksAfter = alive.healthChecks;
    await waitFor('two more probe beats', () => alive.healthChecks >= checksAfter + 2, 10_000);
    expect(about('info')).toHaveLength(1);
    expect(about('info')[0]).toMatch(new RegExp(`replica ${dead.name} \\(${dead.address}\\) is healthy again after \\d+ s \\(1 passed probe\\)`));
    expect(about('warn')).toHaveLength(1);
    // The healthy replica was never mentioned.
    expect(log().filter((l) => l.includes('replica ' + alive.name))).toEqual([]);
  });
});
