// A real llama-server (llama.cpp) per spec or benchmark, provisioned by build/fetch-llama.js (npm
// test's pretest runs it), serving the random-weight model testbed/llama/tiny-model.ts writes: on a
// free 127.0.0.1 port, stopped by its owner. kill() ends it with SIGKILL (a replica that dies);
// stop() then start() restarts it on the same port; pause()/resume() (SIGSTOP/SIGCONT) make it hang.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureTinyModel, SPEC_MODEL } from '../llama/tiny-model';
import type { TinyModelShape } from '../llama/tiny-model';
import { freePort } from './nginx-process';
import { serviceProcess } from './service-process';
import type { ServiceProcess } from './service-process';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LLAMA_ENV_PATH = path.join(REPO_ROOT, '.cache', 'llama', 'env.json');

// The spec model loads in ~50 ms; a bigger one and a loaded CI machine need more.
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;

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

/** start() after stop() or kill() restarts it on the same port, its prompt cache gone as after a real restart. */
export interface LlamaServer extends ServiceProcess {
  port: number;
  /** http://127.0.0.1:PORT */
  url: string;
  /** The model name served (--alias). */
  model: string;
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
  const threads = String(options.threads ?? 1);
  const server = serviceProcess({
    name: `llama-server on port ${port}`,
    argv: env.serverArgv.concat(
      [
        '--model', modelFile, '--alias', alias,
        '--host', '127.0.0.1', '--port', String(port),
        '--parallel', String(slots), '--ctx-size', String(options.contextTokens ?? 2048 * slots),
        '--threads', threads, '--threads-batch', threads,
        // /metrics is off by default; the balancer's `llm` strategy and the specs read it.
        '--metrics',
        '--no-webui',
        // A generation that fills its slot's context goes on (the oldest tokens are dropped)
        // instead of ending there: specs keep slots busy with answers of unbounded length, which
        // the spec model would otherwise finish in well under a second.
        '--context-shift',
      ],
      options.extraArgs ?? [],
    ),
    // llama-server answers /health with 503 while it loads the model, 200 once it serves.
    ready: async () => (await healthStatus(port)) === 200,
    startTimeoutMs: START_TIMEOUT_MS,
    stopTimeoutMs: STOP_TIMEOUT_MS,
    pollMs: 20,
  });
  await server.start();
  return { port, url: `http://127.0.0.1:${port}`, model: alias, output: server.output, start: server.start, stop: server.stop, kill: server.kill, pause: server.pause, resume: server.resume };
}
