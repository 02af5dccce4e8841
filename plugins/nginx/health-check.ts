// Active health checks: `js_periodic llm_balancer.healthCheck` (one worker runs it) probes every
// replica with GET http://<address><active_health.path> through ngx.fetch; 2xx and 3xx pass.
// The core's recordProbe applies the healthy/unhealthy thresholds (shared/health/active.ts).
//
// Measured in njs 0.8.9 and what follows from it:
// - a js_periodic run still going at the next beat is KILLED ("is already running, killing
//   previous instance"), its pending fetches with it. So each probe is bounded by timeout_s here
//   (and by js_fetch_timeout), and a probe that never reported (its run was killed) is counted as
//   failed at a later beat: a replica that hangs is marked down even when the beat is shorter than
//   the timeout.
// - the beat may be shorter than interval_s: each replica is probed when interval_s has passed
//   since its last probe, with a little slack so a beat equal to interval_s never skips one.
// - hostnames in replica addresses need nginx's `resolver` for ngx.fetch; IP addresses do not.
// - a probe of a replica that refuses connections makes nginx log "recv() failed (111: Connection
//   refused)" at error level, naming neither replica nor probe: one line per probe (the issue
//   measured 1,244 lines in 10 minutes with four replicas down). Only the location's error_log
//   decides, and it decides for ngx.log too. So the probes run in a location whose error_log is
//   /dev/null and log nothing themselves: they leave each up/down change in the state zone, and
//   `healthReport`, a js_periodic of its own in a location that logs, writes ONE warn line when a
//   replica is marked unhealthy (id, address, why) and one info line when it is healthy again.

import type { ActiveHealthConfig } from '../../shared/config/types';
import { recordProbe } from '../../shared/health/active';
import { keysOf } from '../../shared/replica-state';
import type { Replica, Store } from '../../shared/types';
import { context } from './handlers';
import { host, systemClock } from './runtime';

/** When the last probe of a replica started (ms); adapter-owned keys beside the core's `r:<id>:*`. */
const PROBED_AT_PREFIX = 'h:at:';
/** Set while a probe is out; left behind when its run was killed. */
const PENDING_PREFIX = 'h:pd:';
/** js_periodic beats drift by a few ms; a replica due within this much is probed now. */
const SLACK_MS = 250;
/** A change not yet logged (see Pending). */
const PENDING_LOG_PREFIX = 'h:log:';
/** Why the last probe failed (see ProbeResult). */
const LAST_FAILURE_PREFIX = 'h:why:';
/** When the replica was marked unhealthy (ms), for the recovery line. */
const DOWN_SINCE_PREFIX = 'h:dn:';
/** Probe runs that threw since the last report (their error line would go to /dev/null). */
const RUN_FAILURES_KEY = 'h:runerr';

/**
 * A probe's result as a number the state zone can hold: an HTTP status (100–599) when the replica
 * answered, NO_CONNECTION when it could not be reached, NO_ANSWER when it did not answer in time.
 */
export const NO_CONNECTION = 0;
export const NO_ANSWER = -1;

/**
 * The changes of one replica not yet logged, in order: DOWN, UP, DOWN_UP (marked down and up
 * again before the report ran), UP_DOWN. Another change collapses to the latest state.
 */
export const PENDING = { down: 1, up: 2, downUp: 3, upDown: 4 } as const;

/** The pending log after a change to `down` (true) or up, given what was pending. */
export function nextPending(pending: number | undefined, down: boolean): number {
  if (down) return pending === PENDING.up ? PENDING.upDown : PENDING.down;
  return pending === PENDING.down ? PENDING.downUp : PENDING.up;
}

/** What a failed probe saw, in words. */
export function describeFailure(result: number | undefined, path: string, timeoutMs: number): string {
  if (result === NO_CONNECTION) return 'GET ' + path + ' could not connect';
  if (result === NO_ANSWER) return 'GET ' + path + ' gave no answer within ' + timeoutMs + ' ms';
  if (result === undefined) return 'GET ' + path + ' failed';
  return 'GET ' + path + ' answered ' + result;
}

/** The log lines of one replica's pending changes: [level, text], in order. */
export function reportLines(
  replica: Replica,
  pending: number,
  lastFailure: number | undefined,
  downSince: number | undefined,
  now: number,
  active: ActiveHealthConfig,
): Array<['warn' | 'info', string]> {
  const name = 'llm-balancer: active check: replica ' + replica.id + ' (' + replica.address + ')';
  const down: ['warn', string] = [
    'warn',
    name + ' is unhealthy after ' + active.unhealthy_threshold + ' failed probe' + (active.unhealthy_threshold === 1 ? '' : 's') +
      ' in a row (last: ' + describeFailure(lastFailure, active.path, active.timeout_s * 1000) + '); no traffic until ' +
      active.healthy_threshold + ' pass' + (active.healthy_threshold === 1 ? 'es' : ''),
  ];
  const downFor = downSince === undefined ? '' : ' after ' + Math.max(0, Math.round((now - downSince) / 1000)) + ' s';
  const up: ['info', string] = ['info', name + ' is healthy again' + downFor + ' (' + active.healthy_threshold + ' passed probe' + (active.healthy_threshold === 1 ? '' : 's') + ')'];
  if (pending === PENDING.down) return [down];
  if (pending === PENDING.up) return [up];
  if (pending === PENDING.downUp) return [down, up];
  if (pending === PENDING.upDown) return [up, down];
  return [];
}

/** Whether a replica last probed at `lastProbeAt` is due again. */
export function probeDue(lastProbeAt: number | undefined, now: number, intervalMs: number): boolean {
  if (lastProbeAt === undefined) return true;
  return now - lastProbeAt >= intervalMs - SLACK_MS || now < lastProbeAt;
}

/** Whether a probe that started at `pendingSince` and never reported must have been lost. */
export function probeLost(pendingSince: number, now: number, timeoutMs: number): boolean {
  return now - pendingSince >= timeoutMs + SLACK_MS || now < pendingSince;
}

function activeConfig(config: unknown): ActiveHealthConfig | null {
  const active = (config as { active_health?: ActiveHealthConfig }).active_health;
  return active !== undefined && active !== null && active.enabled === true ? active : null;
}

/** GET url: the status within timeoutMs, NO_ANSWER after it, NO_CONNECTION when it failed. Never rejects. */
async function probeResult(url: string, timeoutMs: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<null>((resolve) => {
    timer = setTimeout(() => {
      // Forgotten once fired: QuickJS's clearTimeout throws on a timer that already fired
      // ("failed to find timer"), and that exception in a js_periodic run crashed the worker
      // (SIGSEGV every beat with a hanging replica, njs 1.0.2).
      timer = null;
      resolve(null);
    }, timeoutMs);
  });
  try {
    const reply = await Promise.race([host().fetch(url, { method: 'GET' }), expired]);
    return reply === null ? NO_ANSWER : reply.status;
  } catch (e) {
    // njs says "connect failed" for refused connections; its own timeout (js_fetch_timeout) is a failure to answer.
    return /timed? ?out/i.test(String(e)) ? NO_ANSWER : NO_CONNECTION;
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

/** 2xx and 3xx pass. */
function passed(result: number): boolean {
  return result >= 200 && result < 400;
}

/** Records one probe result; a change of state is left in the zone for healthReport to log. */
function record(store: Store, replica: Replica, result: number, active: ActiveHealthConfig): void {
  const wasUp = store.get(keysOf(replica.id).markedDown) !== 1;
  const now = systemClock.now();
  if (!passed(result)) store.set(LAST_FAILURE_PREFIX + replica.id, result);
  const up = recordProbe(store, replica.id, passed(result), { healthyThreshold: active.healthy_threshold, unhealthyThreshold: active.unhealthy_threshold }, now);
  if (up === wasUp) return;
  if (!up) store.set(DOWN_SINCE_PREFIX + replica.id, now);
  const key = PENDING_LOG_PREFIX + replica.id;
  store.set(key, nextPending(store.get(key), !up));
}

async function probe(store: Store, replica: Replica, active: ActiveHealthConfig): Promise<void> {
  const result = await probeResult('http://' + replica.address + active.path, active.timeout_s * 1000);
  store.delete(PENDING_PREFIX + replica.id);
  record(store, replica, result, active);
}

/** js_periodic handler. Never throws (a throw would only be logged, but say what failed). */
export async function healthCheck(_session?: unknown): Promise<void> {
  try {
    const ctx = context();
    const active = activeConfig(ctx.config);
    if (active === null) return;
    const store = ctx.store;
    const now = systemClock.now();
    const probes: Promise<void>[] = [];
    for (let i = 0; i < ctx.replicas.length; i++) {
      const replica = ctx.replicas[i];
      const pendingSince = store.get(PENDING_PREFIX + replica.id);
      if (pendingSince !== undefined) {
        if (!probeLost(pendingSince, now, active.timeout_s * 1000)) continue;
        store.delete(PENDING_PREFIX + replica.id);
        record(store, replica, NO_ANSWER, active);
      }
      if (!probeDue(store.get(PROBED_AT_PREFIX + replica.id), now, active.interval_s * 1000)) continue;
      store.set(PROBED_AT_PREFIX + replica.id, now);
      store.set(PENDING_PREFIX + replica.id, now);
      probes.push(probe(store, replica, active));
    }
    await Promise.all(probes);
  } catch (e) {
    // This location logs to /dev/null: healthReport says it (the words are lost, the count is not).
    try {
      context().store.incr(RUN_FAILURES_KEY, 1, 0);
    } catch (ignored) {
      // No state zone: healthReport fails the same way, and says so.
    }
  }
}

/**
 * js_periodic handler in a location that logs: one line per change of a replica's health the
 * probes left behind (warn: unhealthy, info: healthy again), and the probe runs that failed.
 * Never throws.
 */
export async function healthReport(_session?: unknown): Promise<void> {
  const ngx = host();
  try {
    const ctx = context();
    const active = activeConfig(ctx.config);
    if (active === null) return;
    const store = ctx.store;
    const now = systemClock.now();
    const runFailures = store.get(RUN_FAILURES_KEY);
    if (runFailures !== undefined && runFailures > 0) {
      store.delete(RUN_FAILURES_KEY);
      ngx.log(ngx.ERR, 'llm-balancer: active health check: ' + runFailures + ' probe run(s) failed (their location logs to /dev/null; the status page shows the replicas as last probed)');
    }
    for (let i = 0; i < ctx.replicas.length; i++) {
      const replica = ctx.replicas[i];
      const key = PENDING_LOG_PREFIX + replica.id;
      const pending = store.get(key);
      if (pending === undefined) continue;
      store.delete(key);
      const lines = reportLines(replica, pending, store.get(LAST_FAILURE_PREFIX + replica.id), store.get(DOWN_SINCE_PREFIX + replica.id), now, active);
      for (let j = 0; j < lines.length; j++) ngx.log(lines[j][0] === 'warn' ? ngx.WARN : ngx.INFO, lines[j][1]);
    }
  } catch (e) {
    ngx.log(ngx.ERR, 'llm-balancer: active health report failed: ' + String(e));
  }
}
