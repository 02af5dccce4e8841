// A helper process that announces itself with one JSON line on stdout (testbed/emulator/cli.ts
// --json, testbed/kong-gateway/cli.ts --json): spawned with tsx, its first line awaited, later lines
// kept, and stopped with SIGTERM (SIGKILL after a grace period).

import { spawn } from 'node:child_process';
import readline from 'node:readline';
import { REPO_ROOT } from './nginx-env';

export interface JsonChild<T> {
  /** The first line, parsed. */
  ready: T;
  /** SIGTERM, wait for the exit; resolves with the JSON lines printed after the first, parsed. */
  stop(): Promise<unknown[]>;
}

const START_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

/** Runs `node --import tsx <script> <args>` from the repository root. */
export async function startJsonChild<T>(script: string, args: string[], label: string): Promise<JsonChild<T>> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-16_384)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const later: unknown[] = [];
  let first: ((line: string) => void) | null = null;
  const lines = readline.createInterface({ input: child.stdout! });
  const linesClosed = new Promise<void>((resolve) => lines.once('close', () => resolve()));
  lines.on('line', (line) => {
    if (first !== null) {
      const take = first;
      first = null;
      take(line);
      return;
    }
    try {
      later.push(JSON.parse(line));
    } catch {
      later.push(line);
    }
  });
  const stop = async (): Promise<unknown[]> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    }
    // The last lines may still be in the pipe when 'exit' fires.
    await linesClosed;
    return later;
  };
  const line = await Promise.race([
    new Promise<string>((resolve) => (first = resolve)),
    exited.then(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), START_TIMEOUT_MS)),
  ]);
  if (line === null) {
    await stop();
    throw new Error(`${label} did not start:\n${stderr}`);
  }
  return { ready: JSON.parse(line) as T, stop };
}
