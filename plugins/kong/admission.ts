// Admission on Kong (admission.*, issue 15). Kong's plugin server is one Node process per Kong
// node, so the gateway queue is this process's memory: per pool (the request's model; one pool
// without model routing) a shared/admission-queue.ts queue of access phases waiting for a pick.
// A waiting access holds no replica: it holds only its promise, which the dispatcher resolves.
//
//   admit    the fast path when nobody waits in the pool: pick now; only a `saturated` answer
//            (shared/saturation.ts) makes the request wait. When someone waits, a newcomer waits
//            too (no overtaking), and the dispatcher decides who goes.
//   wake     capacity may have freed (a log phase ended an attempt, a scrape arrived): the heads
//            of the queues pick again, in the queue's order, until one is still saturated.
//   timer    while anyone waits, every POLL_MS: deadlines (admission.max_wait_s) and a wake
//            (other Kong nodes' requests end too, seen through Redis or the replicas' /metrics).
//
// A dispatched request's pick has already been started (onStart, in the same tick as its pick),
// so the next head's pick sees it in flight.

import { createAdmissionQueue } from '../../shared/admission-queue';
import type { AdmissionQueue, RejectedBecause, Waiter } from '../../shared/admission-queue';
import type { PickResult } from '../../shared/types';
import type { AdmissionReport } from '../../shared/status-report';


export type Admitted =
  | { kind: 'picked'; result: PickResult; waitedMs: number }
  | { kind: 'rejected'; because: RejectedBecause; waitedMs: number }
  /** The pick itself threw while the request waited (answered like a failed pick). */
  | { kind: 'failed'; error: unknown; waitedMs: number };

/** What the status page and Prometheus show (shared/status-report.ts). */
export type AdmissionStatus = AdmissionReport;

export interface AdmissionGate {
  /**
   * Picks now, or waits its turn while the pool is saturated. `attempt` picks (and starts the
   * pick) synchronously; it runs again each time the request is at the head and capacity may have freed.
   * `band` and `tenant` are read only for a request that cannot go at once (each may be a PDK call).
   */
  admit(pool: string, band: () => Promise<number>, tenant: () => Promise<string>, attempt: () => PickResult, limits: AdmissionLimits): Promise<Admitted>;
  /** Capacity may have freed: dispatch the heads that can go now. */
  wake(): void;
  status(): AdmissionStatus;
  /** Rejects everyone waiting (the plugin state is released) and stops the timer. */
  stop(): void;
}

/** The waiting bounds of one request (its plugin instance's admission.max_wait_s and max_queue). */
export interface AdmissionLimits {
  maxWaitMs: number;
  maxQueue: number;
}

interface Ticket {
  attempt: () => PickResult;
  resolve: (admitted: Admitted) => void;
  since: number;
}

/** How often the waiting requests' deadlines are checked and the heads try again. */
export const POLL_MS = 50;

function saturatedResult(result: PickResult): boolean {
  return !result.ok && result.reason === 'saturated';
}

/**
 * One waiting room. Every plugin instance balancing the same replicas shares one (index.ts keys
 * them by the upstream): a route's priority band then competes with the other routes' bands.
 */
export function createAdmissionGate(options: { now?: () => number } = {}): AdmissionGate {
  const now = options.now !== undefined ? options.now : Date.now;
  const pools: Record<string, AdmissionQueue<Ticket>> = Object.create(null);
  const rejected: Record<RejectedBecause, number> = { shed: 0, full: 0, timeout: 0, displaced: 0 };
  let admittedAfterWait = 0;
  let nextKey = 1;
  let timer: NodeJS.Timeout | null = null;

  function queueOf(pool: string): AdmissionQueue<Ticket> {
    let queue = pools[pool];
    if (queue === undefined) {
      // Each newcomer brings its own cap (offer's maxSize); this one is never reached.
      queue = createAdmissionQueue<Ticket>(Infinity);
      pools[pool] = queue;
    }
    return queue;
  }

  function waitingCount(): number {
    let count = 0;
    for (const pool of Object.keys(pools)) count += pools[pool].size();
    return count;
  }

  function reject(waiter: Waiter<Ticket>, because: RejectedBecause): void {
    rejected[because]++;
    waiter.value.resolve({ kind: 'rejected', because: because, waitedMs: now() - waiter.value.since });
  }

  function dispatch(queue: AdmissionQueue<Ticket>): void {
    for (let head = queue.peek(); head !== null; head = queue.peek()) {
      let result: PickResult;
      try {
        result = head.value.attempt();
      } catch (error) {
        queue.take();
        head.value.resolve({ kind: 'failed', error: error, waitedMs: now() - head.value.since });
        continue;
      }
      if (saturatedResult(result)) return;
      queue.take();
      admittedAfterWait++;
      head.value.resolve({ kind: 'picked', result: result, waitedMs: now() - head.value.since });
    }
  }

  function tick(): void {
    const at = now();
    for (const pool of Object.keys(pools)) {
      const queue = pools[pool];
      for (const waiter of queue.expire(at)) reject(waiter, 'timeout');
      dispatch(queue);
    }
    if (waitingCount() === 0 && timer !== null) {
      clearInterval(timer);
      timer = null;
    }
  }

  function arm(): void {
    if (timer !== null) return;
    timer = setInterval(tick, POLL_MS);
    // Waiting requests keep their own sockets open; the timer alone must not keep the process up.
    timer.unref();
  }

  return {
    async admit(pool, band, tenant, attempt, limits) {
      const queue = queueOf(pool);
      if (queue.size() === 0) {
        const result = attempt();
        if (!saturatedResult(result)) return { kind: 'picked', result: result, waitedMs: 0 };
      }
      const since = now();
      const level = await band();
      // Sheddable bands never wait (and need no tenant).
      if (level < 0) {
        rejected.shed++;
        return { kind: 'rejected', because: 'shed', waitedMs: 0 };
      }
      const who = await tenant();
      return new Promise<Admitted>((resolve) => {
        const offered = queue.offer({ key: nextKey++, band: level, tenant: who, deadline: since + limits.maxWaitMs, value: { attempt: attempt, resolve: resolve, since: since } }, limits.maxQueue);
        if (offered.displaced !== null) reject(offered.displaced, 'displaced');
        if (!offered.queued) {
          rejected.full++;
          resolve({ kind: 'rejected', because: 'full', waitedMs: 0 });
          return;
        }
        arm();
        // Capacity may have freed while the tenant was read: the head (maybe this one) goes now.
        dispatch(queue);
      });
    },
    wake(): void {
      for (const pool of Object.keys(pools)) dispatch(pools[pool]);
    },
    status(): AdmissionStatus {
      const byBand: Record<number, number> = {};
      for (const pool of Object.keys(pools)) for (const row of pools[pool].bands()) byBand[row.band] = (byBand[row.band] ?? 0) + row.waiting;
      const waiting = Object.keys(byBand)
        .map((band) => ({ band: Number(band), waiting: byBand[Number(band)] }))
        .sort((a, b) => b.band - a.band);
      return { waiting: waiting, admittedAfterWait: admittedAfterWait, rejected: { ...rejected } };
    },
    stop(): void {
      if (timer !== null) clearInterval(timer);
      timer = null;
      for (const pool of Object.keys(pools)) for (const waiter of pools[pool].expire(Infinity)) reject(waiter, 'timeout');
    },
  };
}
