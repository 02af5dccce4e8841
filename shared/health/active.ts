// Active health-check bookkeeping (Kong-style thresholds): a replica becomes unhealthy after
// `unhealthyThreshold` failed probes in a row and healthy again after `healthyThreshold` passed
// probes in a row. Pure state transitions in the Store; the adapter runs the probes
// (njs `js_periodic` + `ngx.fetch`; on Kong, Kong's own checks reported through its Admin API).

import type { Store } from '../types';
import { readNumber, replicaKey } from '../replica-state';

const PASSED_IN_A_ROW = 'ap';
const FAILED_IN_A_ROW = 'af';
/** 1 = marked unhealthy by active checks; absent = healthy (a replica starts trusted). */
const MARKED_DOWN = 'ad';

export interface ActiveThresholds {
  healthyThreshold: number;
  unhealthyThreshold: number;
}

export function activelyUnhealthy(store: Store, id: string): boolean {
  return readNumber(store, id, MARKED_DOWN) === 1;
}

/** Records one probe result and returns whether the replica is now considered healthy. */
export function recordProbe(store: Store, id: string, passed: boolean, thresholds: ActiveThresholds): boolean {
  if (passed) {
    store.set(replicaKey(id, FAILED_IN_A_ROW), 0);
    const inARow = store.incr(replicaKey(id, PASSED_IN_A_ROW), 1, 0);
    if (inARow >= thresholds.healthyThreshold) store.delete(replicaKey(id, MARKED_DOWN));
  } else {
    store.set(replicaKey(id, PASSED_IN_A_ROW), 0);
    const inARow = store.incr(replicaKey(id, FAILED_IN_A_ROW), 1, 0);
    if (inARow >= thresholds.unhealthyThreshold) store.set(replicaKey(id, MARKED_DOWN), 1);
  }
  return !activelyUnhealthy(store, id);
}
