// A server process a spec or benchmark starts, waits for and stops (redis-server, llama-server):
// spawned with its output collected for failure messages, ready once `ready()` says so, stopped
// with SIGTERM (SIGKILL after a grace period) or killed outright, paused and resumed with
// SIGSTOP/SIGCONT, and started again with the same arguments (the same port: a restart).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

const OUTPUT_LIMIT = 256 * 1024;

export interface ServiceOptions {
  /** Names the server in errors, e.g. "redis-server on port 6380". */
  name: string;
  argv: string[];
  /** True once the server answers; polled every `pollMs` until `startTimeoutMs`. */
  ready(): Promise<boolean>;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  pollMs: number;
}

export interface ServiceProcess {
  /** Its stdout and stderr so far (the first 256 KiB). */
  output(): string;
  /** Spawns it and waits until ready; throws with its output when it exits or times out first. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL now (the server dies mid-request); resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel, nothing is answered. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function serviceProcess(options: ServiceOptions): ServiceProcess {
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  async function start(): Promise<void> {
    if (child !== null) throw new Error(`${options.name} is already running`);
    const started = spawn(options.argv[0], options.argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    const collect = (chunk: Buffer) => {
      if (output.length < OUTPUT_LIMIT) output += chunk.toString('utf8');
    };
    started.stdout?.on('data', collect);
    started.stderr?.on('data', collect);
    exited = new Promise<void>((resolve) => {
      started.once('exit', () => {
        if (child === started) child = null;
        resolve();
      });
    });
    const deadline = Date.now() + options.startTimeoutMs;
    while (Date.now() < deadline) {
      if (child !== started) throw new Error(`${options.name} exited at start:\n${output}`);
      if (await options.ready()) return;
      await sleep(options.pollMs);
    }
    started.kill('SIGKILL');
    throw new Error(`${options.name} was not ready within ${options.startTimeoutMs} ms:\n${output}`);
  }

  async function signal(name: NodeJS.Signals, escalateAfterMs: number | null): Promise<void> {
    const running = child;
    if (running === null) return;
    // A paused process would never handle SIGTERM.
    running.kill('SIGCONT');
    running.kill(name);
    const timer = escalateAfterMs === null ? null : setTimeout(() => running.kill('SIGKILL'), escalateAfterMs);
    await exited;
    if (timer !== null) clearTimeout(timer);
  }

  return {
    output: () => output,
    start,
    stop: () => signal('SIGTERM', options.stopTimeoutMs),
    kill: () => signal('SIGKILL', null),
    pause: () => {
      if (child !== null) child.kill('SIGSTOP');
    },
    resume: () => {
      if (child !== null) child.kill('SIGCONT');
    },
  };
}
