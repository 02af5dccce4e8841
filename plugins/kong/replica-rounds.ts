// Background rounds over the current replicas, the loop the /metrics scraper (metrics-scraper.ts)
// and the active health prober (health-prober.ts) share: a round at start, then one every
// interval (timer unref'd: never the reason the plugin server stays up); each round reads every
// replica the access phase would see right now, all at once. A round still running when the timer
// fires (a replica hanging until its timeout) is joined, not doubled. A stopped loop (its plugin
// state replaced or released) neither feeds its balancer nor logs. Each replica writes one log line
// when its reads start failing and one when they pass again, on console.warn (the plugin server
// sends its stderr to Kong's error log); a replica that left the list takes its streak with it.

import type { Replica } from '../../shared/types';

/** What one read of one replica came to, with the log lines its streak may need. */
export interface RoundVerdict {
  /** null: passed; else what went wrong. */
  problem: string | null;
  /** The line logged when this failure starts a streak. */
  failedLine(problem: string): string;
  /** The line logged when this pass ends a streak of `failed` failures. */
  recoveredLine(failed: number): string;
}

export interface ReplicaRoundsOptions<T> {
  intervalMs: number;
  /** The replicas to read, asked at each round. */
  replicas: () => Replica[];
  /** Reads one replica (the network part; never throws). */
  read: (replica: Replica) => Promise<T>;
  /** Hands what was read to the balancer and judges it; called only while the loop runs. */
  settle: (replica: Replica, result: T) => RoundVerdict;
  /** Logged (with the error) if a round throws anyway. */
  roundFailedLine: string;
}

export interface ReplicaRounds {
  /** Starts a round, or joins the one in flight; resolves when it has finished. */
  runNow(): Promise<void>;
  stop(): void;
}

export function startReplicaRounds<T>(options: ReplicaRoundsOptions<T>, write: (message: string) => void): ReplicaRounds {
  /** Replica id -> failed reads in its current streak (absent: passing). */
  const failing: Record<string, number> = Object.create(null);
  let round: Promise<void> | null = null;
  let stopped = false;

  async function readOne(replica: Replica): Promise<void> {
    const result = await options.read(replica);
    // A replaced plugin state's balancer is gone: neither feed it nor speak for it.
    if (stopped) return;
    const verdict = options.settle(replica, result);
    const failed = failing[replica.id];
    if (verdict.problem === null) {
      if (failed !== undefined) {
        write(verdict.recoveredLine(failed));
        delete failing[replica.id];
      }
      return;
    }
    if (failed === undefined) {
      write(verdict.failedLine(verdict.problem));
      failing[replica.id] = 1;
    } else {
      failing[replica.id] = failed + 1;
    }
  }

  async function readAll(): Promise<void> {
    const replicas = options.replicas();
    const current: Record<string, true> = Object.create(null);
    const reads: Array<Promise<void>> = [];
    for (const replica of replicas) {
      current[replica.id] = true;
      reads.push(readOne(replica));
    }
    await Promise.all(reads);
    // A target removed from the upstream takes its streak with it.
    for (const id of Object.keys(failing)) if (!current[id]) delete failing[id];
  }

  function runNow(): Promise<void> {
    if (stopped) return Promise.resolve();
    if (round !== null) return round;
    // Nothing below should throw; if something does, the round still ends and the next one runs.
    round = readAll()
      .catch((error: unknown) => {
        if (!stopped) write(options.roundFailedLine + ': ' + String(error));
      })
      .then(() => {
        round = null;
      });
    return round;
  }

  const timer = setInterval(() => {
    void runNow();
  }, options.intervalMs);
  timer.unref();
  void runNow();
  return {
    runNow,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
