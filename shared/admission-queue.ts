// The gateway's waiting room for requests a saturated pool cannot take yet (admission, issue 15).
// Pure and synchronous: the adapter holds the waiting requests (a promise, a timer, a js_content
// that has not answered), this decides who goes next and who leaves, on the adapter's clock.
//
//   priority  strict across bands: a waiter of a higher band always goes before a lower band's.
//             Bands below 0 are sheddable: never queued (the adapter rejects them at once when the
//             pool is saturated), so they are the first to be refused.
//   fairness  within a band, round robin over the tenants that have someone waiting (llm-d's flow
//             control cycles through flows the same way): a tenant sending 5x the others gets one
//             turn per round like them, not five.
//   order     first come, first served within a tenant.
//   bounds    every waiter has a deadline (max_wait_s) and the queue a size cap; when full, a
//             newcomer displaces the newest waiter of a lower band, else is refused.
// Every waiter leaves exactly once: taken (dispatched), expired, displaced or removed (its client
// went away). Written in the njs subset: plain objects and arrays, index loops.

/**
 * Why a request got no replica from the waiting room: its band is sheddable, the queue was full,
 * it waited past its deadline, or a higher band displaced it.
 */
export type RejectedBecause = 'shed' | 'full' | 'timeout' | 'displaced';

export interface Waiter<T> {
  /** The adapter's own handle for the request (unique while it waits). */
  key: number;
  /** Priority band: higher goes first; below 0 never waits (sheddable). */
  band: number;
  /** Fairness key within the band: the tenant (consumer, consumer group...) the gateway's auth established. */
  tenant: string;
  /** When it stops waiting (ms, the adapter's clock). */
  deadline: number;
  value: T;
}

export interface Offered<T> {
  /** It waits now. */
  queued: boolean;
  /** The waiter it displaced to get in (the queue was full), which leaves the queue now. */
  displaced: Waiter<T> | null;
}

export interface AdmissionQueue<T> {
  /**
   * Lets a waiter in (see Offered). A sheddable band (< 0) is never queued. `maxSize`: the cap
   * for this newcomer instead of the queue's own (callers sharing a queue may each have theirs).
   */
  offer(waiter: Waiter<T>, maxSize?: number): Offered<T>;
  /** Who would go next, without taking it; null when nobody waits. */
  peek(): Waiter<T> | null;
  /** Takes the next waiter (strict priority, then round robin over tenants, FIFO within one). */
  take(): Waiter<T> | null;
  /** Removes a waiter by key (its client went away); whether it was waiting. */
  remove(key: number): boolean;
  /** Removes and returns every waiter whose deadline is at or before `now`, oldest deadline first. */
  expire(now: number): Array<Waiter<T>>;
  size(): number;
  /** Waiters per band, highest band first (the status page). */
  bands(): Array<{ band: number; waiting: number }>;
  /** The earliest deadline of anyone waiting, or null (when the adapter's timer should next fire). */
  nextDeadline(): number | null;
}

/** One band's tenants: a ring of those with someone waiting, each with its FIFO. */
interface Band<T> {
  band: number;
  ring: string[];
  /** Index into ring of the tenant whose turn is next. */
  turn: number;
  fifo: Record<string, Array<Waiter<T>>>;
  count: number;
}

export function createAdmissionQueue<T>(maxSize: number): AdmissionQueue<T> {
  // Highest band first; a band stays listed once created (there are a handful).
  const bands: Array<Band<T>> = [];
  let size = 0;

  function bandOf(band: number, create: boolean): Band<T> | null {
    for (let i = 0; i < bands.length; i++) if (bands[i].band === band) return bands[i];
    if (!create) return null;
    const made: Band<T> = { band: band, ring: [], turn: 0, fifo: Object.create(null) as Record<string, Array<Waiter<T>>>, count: 0 };
    let at = 0;
    while (at < bands.length && bands[at].band > band) at++;
    bands.splice(at, 0, made);
    return made;
  }

  function append(waiter: Waiter<T>): void {
    const band = bandOf(waiter.band, true) as Band<T>;
    let fifo = band.fifo[waiter.tenant];
    if (fifo === undefined) {
      fifo = [];
      band.fifo[waiter.tenant] = fifo;
    }
    // A tenant joining the ring goes last in the current round: just before the one whose turn is next.
    if (fifo.length === 0) {
      band.ring.splice(band.turn, 0, waiter.tenant);
      band.turn++;
      if (band.turn >= band.ring.length) band.turn = 0;
    }
    fifo.push(waiter);
    band.count++;
    size++;
  }

  /** Removes position `index` of tenant `tenant`'s FIFO in `band`, dropping the tenant from the ring when it empties. */
  function removeAt(band: Band<T>, tenant: string, index: number): Waiter<T> {
    const fifo = band.fifo[tenant];
    const waiter = fifo.splice(index, 1)[0];
    band.count--;
    size--;
    if (fifo.length === 0) {
      delete band.fifo[tenant];
      const at = band.ring.indexOf(tenant);
      band.ring.splice(at, 1);
      if (at < band.turn) band.turn--;
      if (band.turn >= band.ring.length) band.turn = 0;
    }
    return waiter;
  }

  function firstBand(): Band<T> | null {
    for (let i = 0; i < bands.length; i++) if (bands[i].count > 0) return bands[i];
    return null;
  }

  /** The newest waiter of the lowest non-empty band below `band`, removed; null when there is none. */
  function displaceBelow(band: number): Waiter<T> | null {
    for (let i = bands.length - 1; i >= 0; i--) {
      const candidate = bands[i];
      if (candidate.band >= band) return null;
      if (candidate.count === 0) continue;
      let tenant = '';
      let index = -1;
      let newest = -Infinity;
      for (let j = 0; j < candidate.ring.length; j++) {
        const fifo = candidate.fifo[candidate.ring[j]];
        const last = fifo[fifo.length - 1];
        // The key orders arrivals (the adapter numbers them); the newest has waited least.
        if (last.key > newest) {
          newest = last.key;
          tenant = candidate.ring[j];
          index = fifo.length - 1;
        }
      }
      return removeAt(candidate, tenant, index);
    }
    return null;
  }

  return {
    offer(waiter: Waiter<T>, cap?: number): Offered<T> {
      if (waiter.band < 0) return { queued: false, displaced: null };
      let displaced: Waiter<T> | null = null;
      if (size >= (cap === undefined ? maxSize : cap)) {
        displaced = displaceBelow(waiter.band);
        if (displaced === null) return { queued: false, displaced: null };
      }
      append(waiter);
      return { queued: true, displaced: displaced };
    },
    peek(): Waiter<T> | null {
      const band = firstBand();
      if (band === null) return null;
      return band.fifo[band.ring[band.turn]][0];
    },
    take(): Waiter<T> | null {
      const band = firstBand();
      if (band === null) return null;
      const tenant = band.ring[band.turn];
      const remaining = band.fifo[tenant].length - 1;
      const waiter = removeAt(band, tenant, 0);
      // The tenant had its turn: the next one's comes (removeAt already moved on if it left the ring).
      if (remaining > 0) band.turn = band.turn + 1 >= band.ring.length ? 0 : band.turn + 1;
      return waiter;
    },
    remove(key: number): boolean {
      for (let i = 0; i < bands.length; i++) {
        const band = bands[i];
        for (let j = 0; j < band.ring.length; j++) {
          const fifo = band.fifo[band.ring[j]];
          for (let k = 0; k < fifo.length; k++) {
            if (fifo[k].key === key) {
              removeAt(band, band.ring[j], k);
              return true;
            }
          }
        }
      }
      return false;
    },
    expire(now: number): Array<Waiter<T>> {
      const gone: Array<Waiter<T>> = [];
      for (let i = 0; i < bands.length; i++) {
        const band = bands[i];
        // Walk a copy of the ring: removeAt edits it.
        const tenants = band.ring.slice();
        for (let j = 0; j < tenants.length; j++) {
          const fifo = band.fifo[tenants[j]];
          for (let k = fifo.length - 1; k >= 0; k--) {
            if (fifo[k].deadline <= now) gone.push(removeAt(band, tenants[j], k));
          }
        }
      }
      gone.sort(function (a, b) {
        return a.deadline - b.deadline || a.key - b.key;
      });
      return gone;
    },
    size: () => size,
    bands(): Array<{ band: number; waiting: number }> {
      const out: Array<{ band: number; waiting: number }> = [];
      for (let i = 0; i < bands.length; i++) if (bands[i].count > 0) out.push({ band: bands[i].band, waiting: bands[i].count });
      return out;
    },
    nextDeadline(): number | null {
      let soonest: number | null = null;
      for (let i = 0; i < bands.length; i++) {
        const band = bands[i];
        for (let j = 0; j < band.ring.length; j++) {
          const fifo = band.fifo[band.ring[j]];
          for (let k = 0; k < fifo.length; k++) if (soonest === null || fifo[k].deadline < soonest) soonest = fifo[k].deadline;
        }
      }
      return soonest;
    },
  };
}

/**
 * The band admission.consumer_priorities gives a consumer known by these names (a Kong consumer's
 * id and username; on NGINX the verified consumer variable's value), or null when none is listed.
 */
export function consumerBand(priorities: Array<{ consumer: string; priority: number }>, names: Array<string | null | undefined>): number | null {
  for (let i = 0; i < priorities.length; i++) {
    for (let j = 0; j < names.length; j++) {
      if (names[j] !== null && names[j] !== undefined && names[j] !== '' && priorities[i].consumer === names[j]) return priorities[i].priority;
    }
  }
  return null;
}
