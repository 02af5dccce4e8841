// Active health-check bookkeeping (Kong-style thresholds): a replica becomes unhealthy after
// `unhealthyThreshold` failed probes in a row and healthy again after `healthyThreshold` passed
// probes in a row. Pure state transitions in the Store; the adapter runs the probes
// (njs `js_periodic` + `ngx.fetch`; on Kong, Kong's own checks reported through its Admin API).
// A replica starts trusted: its mark is 1 while unhealthy and absent otherwise.

import type { Store } from '../types';
import { keysOf, readNumber } from '../replica-state';
import { ejectedForConnectErrors, liftEjection } from './passive';
import type { ReplicaKeys } from '../replica-state';

/**
 * How many replicas are marked down right now. Lets a pick skip every per-replica mark read in the
 * usual case of none; exact because probes of a replica are recorded by one writer at a time
 * (njs runs `js_periodic` on a single worker).
 */
export const MARKED_DOWN_COUNT_KEY = 'a:down';

export interface ActiveThresholds {
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export function anyActivelyUnhealthy(store: Store): boolean {
  return readNumber(store, MARKED_DOWN_COUNT_KEY) > 0;
}

export function activelyUnhealthy(store: Store, keys: ReplicaKeys): boolean {
  return readNumber(store, keys.markedDown) === 1;
}

/** Records one probe result and returns whether the replica is now considered healthy. */
export function recordProbe(store: Store, id: string, passed: boolean, thresholds: ActiveThresholds, now?: number): boolean {
  const keys = keysOf(id);
  const wasDown = activelyUnhealthy(store, keys);
  if (passed) {
    // A replica ejected because connections to it failed answers again: it is back (a restart),
    // and no client request has to be its half-open trial. Ejections for errors or timeouts stand:
    // a hung or flaky replica still answers its health check.
    if (now !== undefined && ejectedForConnectErrors(store, keys)) liftEjection(store, keys, now);
    store.set(keys.probesFailed, 0);
    const inARow = store.incr(keys.probesPassed, 1, 0);
    if (wasDown && inARow >= thresholds.healthyThreshold) {
      store.delete(keys.markedDown);
      store.incr(MARKED_DOWN_COUNT_KEY, -1, 0);
      // Back in service: slow start ramps its share up again.
      if (now !== undefined) store.set(keys.availableSince, now);
    }
  } else {
    store.set(keys.probesPassed, 0);
    const inARow = store.incr(keys.probesFailed, 1, 0);
    if (!wasDown && inARow >= thresholds.unhealthyThreshold) {
      store.set(keys.markedDown, 1);
      store.incr(MARKED_DOWN_COUNT_KEY, 1, 0);
    }
  }
  return !activelyUnhealthy(store, keys);
}
