// The time source the engine (model.ts) runs on: a clock plus one-shot timers. The HTTP replicas
// use the real one; specs and offline simulations use the manual one, whose time moves only when
// told to, so every duration the model computes can be asserted exactly.

export interface TimerHandle {
  cancel(): void;
}

export interface EngineClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls fire once, delayMs from now (0 or less: as soon as possible, after the current task). */
  setTimer(delayMs: number, fire: () => void): TimerHandle;
}

/** performance.now() and Node timers. */
export function createRealClock(): EngineClock {
  return {
    now: () => performance.now(),
    setTimer(delayMs, fire) {
      // setTimeout's floor is 1 ms; a step that is due now should not wait for it.
      if (delayMs <= 0) {
        const immediate = setImmediate(fire);
        return { cancel: () => clearImmediate(immediate) };
      }
      const timeout = setTimeout(fire, delayMs);
      return { cancel: () => clearTimeout(timeout) };
    },
  };
}

export interface ManualClock extends EngineClock {
  /** Moves time forward by ms, firing every timer that falls due on the way, in due order. */
  advance(ms: number): void;
  /** Fires timers until none is left (or maxMs have passed); returns the time reached. */
  runUntilIdle(maxMs?: number): number;
  /** Timers scheduled and not yet fired or cancelled. */
  pendingTimers(): number;
}

/** Guards runUntilIdle against a model that never goes idle: a day of emulated time. */
const DEFAULT_IDLE_LIMIT_MS = 24 * 60 * 60 * 1000;

interface ManualTimer {
  dueAt: number;
  /** Creation order: timers due at the same time fire in the order they were set. */
  order: number;
  fire: () => void;
  cancelled: boolean;
}

export function createManualClock(startMs = 0): ManualClock {
  let now = startMs;
  let created = 0;
  let timers: ManualTimer[] = [];

  function nextDue(limit: number): ManualTimer | undefined {
    let next: ManualTimer | undefined;
    for (const timer of timers) {
      if (timer.cancelled || timer.dueAt > limit) continue;
      if (next === undefined || timer.dueAt < next.dueAt || (timer.dueAt === next.dueAt && timer.order < next.order)) next = timer;
    }
    return next;
  }

  function fireUntil(limit: number): void {
    for (let timer = nextDue(limit); timer !== undefined; timer = nextDue(limit)) {
      timer.cancelled = true;
      timers = timers.filter((t) => !t.cancelled);
      now = Math.max(now, timer.dueAt);
      timer.fire();
    }
  }

  return {
    now: () => now,
    setTimer(delayMs, fire) {
      const timer: ManualTimer = { dueAt: now + Math.max(0, delayMs), order: created++, fire, cancelled: false };
      timers.push(timer);
      return {
        cancel: () => {
          timer.cancelled = true;
          timers = timers.filter((t) => !t.cancelled);
        },
      };
    },
    advance(ms) {
      const target = now + ms;
      fireUntil(target);
      now = target;
    },
    runUntilIdle(maxMs = DEFAULT_IDLE_LIMIT_MS) {
      fireUntil(now + maxMs);
      return now;
    },
    pendingTimers: () => timers.length,
  };
}
