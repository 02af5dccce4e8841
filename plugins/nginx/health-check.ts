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

/** GET url; true for 2xx/3xx within timeoutMs. Never rejects. */
async function passes(url: string, timeoutMs: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const expired = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), timeoutMs);
  });
  try {
    const reply = await Promise.race([host().fetch(url, { method: 'GET' }), expired]);
    return reply !== null && reply.status >= 200 && reply.status < 400;
  } catch (e) {
    return false;
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}

function record(store: Store, replica: Replica, passed: boolean, active: ActiveHealthConfig): void {
  const wasUp = store.get(keysOf(replica.id).markedDown) !== 1;
  const up = recordProbe(store, replica.id, passed, { healthyThreshold: active.healthy_threshold, unhealthyThreshold: active.unhealthy_threshold }, systemClock.now());
  if (up !== wasUp) {
    const ngx = host();
    ngx.log(ngx.WARN, 'llm-balancer: active check: replica ' + replica.id + ' (' + replica.address + ') is now ' + (up ? 'healthy' : 'unhealthy'));
  }
}

async function probe(store: Store, replica: Replica, active: ActiveHealthConfig): Promise<void> {
  const passed = await passes('http://' + replica.address + active.path, active.timeout_s * 1000);
  store.delete(PENDING_PREFIX + replica.id);
  record(store, replica, passed, active);
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
        record(store, replica, false, active);
      }
      if (!probeDue(store.get(PROBED_AT_PREFIX + replica.id), now, active.interval_s * 1000)) continue;
      store.set(PROBED_AT_PREFIX + replica.id, now);
      store.set(PENDING_PREFIX + replica.id, now);
      probes.push(probe(store, replica, active));
    }
    await Promise.all(probes);
  } catch (e) {
    const ngx = host();
    ngx.log(ngx.ERR, 'llm-balancer: active health check failed: ' + String(e));
  }
}
