// A real llama-server (llama.cpp) per spec or benchmark, provisioned by build/fetch-llama.js (npm
// test's pretest runs it), serving the random-weight model testbed/llama/tiny-model.ts writes: on a
// free 127.0.0.1 port, stopped by its owner. kill() ends it with SIGKILL (a replica that dies);
// stop() then start() restarts it on the same port; pause()/resume() (SIGSTOP/SIGCONT) make it hang.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTinyModel, SPEC_MODEL } from '../llama/tiny-model';
import type { TinyModelShape } from '../llama/tiny-model';
import { freePort } from './nginx-process';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LLAMA_ENV_PATH = path.join(REPO_ROOT, '.cache', 'llama', 'env.json');

// The spec model loads in ~50 ms; a bigger one and a loaded CI machine need more.
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
const OUTPUT_LIMIT = 256 * 1024;

/** The shape of .cache/llama/env.json. */
export interface LlamaEnv {
  schema: number;
  source: string;
  /** argv prefix that runs llama-server (the loader and library path included for the Debian download) */
  serverArgv: string[];
  version: string;
}

export function loadLlamaEnv(): LlamaEnv {
  let text: string;
  try {
    text = fs.readFileSync(LLAMA_ENV_PATH, 'utf8');
  } catch {
    throw new Error(`${path.relative(REPO_ROOT, LLAMA_ENV_PATH)} is missing: run \`node build/fetch-llama.js\` (npm test runs it as pretest) to provision llama-server`);
  }
  return JSON.parse(text) as LlamaEnv;
}

export interface LlamaServerOptions {
  model?: TinyModelShape;
  /** --parallel: sequences decoded together (continuous batching over these slots). Default 2. */
  slots?: number;
  /** --ctx-size: the KV cache's tokens, shared out among the slots. Default 2048 per slot. */
  contextTokens?: number;
  /** --threads. Default 1: two replicas on a 2-core machine get a core each. */
  threads?: number;
  /** --alias: the model name /v1/models reports and answers carry. Default "random-llama". */
  alias?: string;
  /** More arguments, appended last. */
  extraArgs?: string[];
}

export interface LlamaServer {
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  /** The model name served (--alias). */
  model: string;
  /** The server's log so far, for failure messages. */
  output(): string;
  /** Starts it again on the same port (after stop() or kill()); the prompt cache is gone, as after a real restart. */
  start(): Promise<void>;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it has exited. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL now: the replica dies mid-request. Resolves once it has exited. */
  kill(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel, nothing is answered. */
  pause(): void;
  resume(): void;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET /health's status code; 0 when nothing answers. llama-server answers 503 while it loads. */
function healthStatus(port: number): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/health', agent: false, timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(0));
  });
}

export async function startLlamaServer(options: LlamaServerOptions = {}): Promise<LlamaServer> {
  const env = loadLlamaEnv();
  const modelFile = ensureTinyModel(options.model ?? SPEC_MODEL);
  const port = await freePort();
  const slots = options.slots ?? 2;
  const alias = options.alias ?? 'random-llama';
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let output = '';

  async function start(): Promise<void> {
    if (child !== null) throw new Error(`llama-server on port ${port} is already running`);
    const argv = env.serverArgv.concat([
      '--model', modelFile, '--alias', alias,
      '--host', '127.0.0.1', '--port', String(port),
      '--parallel', String(slots), '--ctx-size', String(options.contextTokens ?? 2048 * slots),
      '--threads', String(options.threads ?? 1), '--threads-batch', String(options.threads ?? 1),
      // /metrics is off by default; the balancer's `llm` strategy and the specs read it.
      '--metrics',
      // Logs to stderr only; the web UI is not needed.
      '--no-webui',
    ], options.extraArgs ?? []);
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
      if (child !== started) throw new Error(`llama-server exited at start:\n${output}`);
      if ((await healthStatus(port)) === 200) return;
      await sleep(20);
    }
    started.kill('SIGKILL');
    throw new Error(`llama-server did not answer /health with 200 on port ${port} within ${START_TIMEOUT_MS} ms:\n${output}`);
  }

  async function signal(name: NodeJS.Signals, escalateAfterMs: number | null): Promise<void> {
    const running = child;
    if (running === null) return;
    running.kill('SIGCONT');
    running.kill(name);
    const timer = escalateAfterMs === null ? null : setTimeout(() => running.kill('SIGKILL'), escalateAfterMs);
    await exited;
    if (timer !== null) clearTimeout(timer);
  }

  await start();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    model: alias,
    output: () => output,
    start,
    stop: () => signal('SIGTERM', STOP_TIMEOUT_MS),
    kill: () => signal('SIGKILL', null),
    pause: () => {
      if (child !== null) child.kill('SIGSTOP');
    },
    resume: () => {
      if (child !== null) child.kill('SIGCONT');
    },
  };
}
