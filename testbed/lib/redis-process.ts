// A real redis-server per spec (or benchmark), provisioned by build/fetch-redis.js (npm test's
// pretest runs it): on a free 127.0.0.1 port, nothing written to disk, stopped by its owner.
// stop()/start() on the same instance simulate an outage and a restart on the same address (the
// data is gone after a restart, as after a real restart without persistence); pause()/resume()
// (SIGSTOP/SIGCONT) simulate a Redis that accepts connections but does not answer.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './nginx-process';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REDIS_ENV_PATH = path.join(REPO_ROOT, '.cache', 'redis', 'env.json');

// redis-server is ready in ~10 ms here; generous so a loaded CI machine does not fail a spec.
const START_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;
const OUTPUT_LIMIT = 64 * 1024;

/** The shape of .cache/redis/env.json. */
export interface RedisEnv {
  schema: number;
  source: string;
  /** argv prefix that runs redis-server (loader included for the Debian download) */
  redisServerArgv: string[];
  redisCliArgv: string[] | null;
  version: string;
}

export function loadRedisEnv(): RedisEnv {
  let text: string;
  try {
    text = fs.readFileSync(REDIS_ENV_PATH, 'utf8');
  } catch {
    throw new Error(`${path.relative(REPO_ROOT, REDIS_ENV_PATH)} is missing: run \`node build/fetch-redis.js\` (npm test runs it as pretest) to provision redis-server`);
  }
  return JSON.parse(text) as RedisEnv;
}

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  /** The server's stdout (its log) so far, for failure messages. */
  output(): string;
  /** Starts it again on the same port after stop() (empty: nothing is persisted). */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after 3 s; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered. */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True once the server answers PING with +PONG. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.once('error', () => done(false));
    socket.setTimeout(500, () => done(false));
  });
}

export async function startRedis(): Promise<RedisServer> {
  const env = loadRedisEnv();
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  async function start(): Promise<void> {
    if (child !== null) throw new Error('redis-server on port ' + port + ' is already running');
    const argv = env.redisServerArgv.concat([
      '--bind', '127.0.0.1', '--port', String(port),
      // Nothing on disk: no RDB snapshots, no append-only file, and its working directory unused.
      '--save', '', '--appendonly', 'no',
      '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning',
    ]);
    const started = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
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
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child !== started) throw new Error('redis-server exited at start:\n' + output);
      if (await answersPing(port)) return;
      await sleep(10);
    }
    started.kill('SIGKILL');
    throw new Error('redis-server did not answer PING on port ' + port + ' within ' + START_TIMEOUT_MS + ' ms:\n' + output);
  }

  async function stop(): Promise<void> {
    const running = child;
    if (running === null) return;
    // A paused server would never handle SIGTERM.
    running.kill('SIGCONT');
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    port,
    url: 'redis://127.0.0.1:' + port,
    output: () => output,
    start,
    stop,
    pause: () => {
      if (child !== null) child.kill('SIGSTOP');
    },
    resume: () => {
      if (child !== null) child.kill('SIGCONT');
    },
  };
}
