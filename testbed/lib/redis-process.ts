// A real redis-server per spec (or benchmark), provisioned by build/fetch-redis.js (npm test's
// pretest runs it): on a free 127.0.0.1 port, nothing written to disk, stopped by its owner.
// stop()/start() on the same instance simulate an outage and a restart on the same address (the
// data is gone after a restart, as after a real restart without persistence); pause()/resume()
// (SIGSTOP/SIGCONT) simulate a Redis that accepts connections but does not answer.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './nginx-process';
import { serviceProcess } from './service-process';
import type { ServiceProcess } from './service-process';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const REDIS_ENV_PATH = path.join(REPO_ROOT, '.cache', 'redis', 'env.json');

// redis-server is ready in ~10 ms here; generous so a loaded CI machine does not fail a spec.
const START_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 3_000;

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

/** start() after stop() restarts it on the same port, empty: nothing is persisted. */
export interface RedisServer extends Omit<ServiceProcess, 'kill'> {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
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
  const server = serviceProcess({
    name: `redis-server on port ${port}`,
    argv: env.redisServerArgv.concat([
      '--bind', '127.0.0.1', '--port', String(port),
      // Nothing on disk: no RDB snapshots, no append-only file, and its working directory unused.
      '--save', '', '--appendonly', 'no',
      '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning',
    ]),
    ready: () => answersPing(port),
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
    pollMs: 10,
  });
  await server.start();
  return { port, url: 'redis://127.0.0.1:' + port, output: server.output, start: server.start, stop: server.stop, pause: server.pause, resume: server.resume };
}
