// The LLM replica emulator: several emulated vLLM replicas in one Node process, each on its own
// port, standing in for GPU replicas in the integration specs, `npm start` and the strategy
// benchmark. Files:
//   tokens.ts    the token counting rule and pseudo-token ids (prefix-cache identity)
//   profiles.ts  h100 / a100 / l4: scheduler parameters and where they come from
//   model.ts     the engine: continuous batching, paged KV cache, chain-hashed prefix cache,
//                LoRA admission (pure)
//   lora-slots.ts  the GPU's LoRA slots: LRU residency, loads and evictions; the LoRA defaults
//   served-models.ts  which `model` names a replica answers to, its 404, GET /v1/models
//   clock.ts     real and manual clocks for the engine
//   content.ts   seeded output lengths and filler words
//   faults.ts    crash / hang / unhealthy / errorRate / slowdown: types and parsing
//   metrics.ts   Prometheus text with vLLM's names
//   server.ts    one replica: the OpenAI-compatible HTTP API over an engine, plus faults
//   index.ts     startEmulatedReplicas (this file), and an optional admin port for every replica
//   cli.ts       `node --import tsx testbed/emulator/cli.ts --replicas h100,a100 ...`
//
// Why a time scale: the benchmark host has 2 cores and CI runs must stay short. At timeScale 1 an
// answer of 128 tokens takes ~1.6 s on the h100 profile and ~8 s on l4; specs run at 0.05 (20x
// faster) and demos at 0.1–1. Every duration of the model is multiplied by it, so the shape of
// the load (who queues, who is slower) is unchanged.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseFaultsPatch } from './faults';
import type { FaultsPatch } from './faults';
import { resolveProfile } from './profiles';
import type { ReplicaProfile } from './profiles';
import type { LoraAdapterSource } from './served-models';
import { startReplicaServer } from './server';
import type { EmulatedReplica } from './server';

export type { EmulatedReplica, ReplicaStats } from './server';
export { DEFAULT_MODEL_NAME, MAX_BODY_BYTES, startReplicaServer } from './server';
export type { Faults, FaultsPatch } from './faults';
export { NO_FAULTS, parseFaultsPatch, parseFaultsText } from './faults';
export type { ReplicaProfile, OutputLengthDistribution } from './profiles';
export { PROFILES, PROFILE_NAMES, resolveProfile } from './profiles';
export type { Engine, EngineStats, Sequence, SequenceListener, SequenceRequest, SubmitResult } from './model';
export { BLOCK_TOKENS, chainBlockHashes, createEngine } from './model';
export type { LoraActivity, LoraStats } from './model';
export { DEFAULT_LORA_LOAD_MS, DEFAULT_MAX_LORAS } from './lora-slots';
export type { LoraAdapterPattern, LoraAdapterSource, ModelCard, NamedLoraAdapter } from './served-models';
export { parseLoraAdapterList, unknownModelError } from './served-models';
export type { EngineClock, ManualClock } from './clock';
export { createManualClock, createRealClock } from './clock';
export { CHARS_PER_TOKEN, TOKENS_PER_MESSAGE, chatTokenIds, countChatTokens, countTextTokens, textTokenIds } from './tokens';
export type { ChatMessage } from './tokens';

export interface ReplicaSpec {
  /** Unique; also the x-llm-replica header and system_fingerprint of its answers. */
  name: string;
  /** A profile name (h100, a100, l4) or a complete profile. */
  profile: string | ReplicaProfile;
  /** 0 or absent: a free port. */
  port?: number;
  /** Absent: the options' seed + the replica's index. */
  seed?: number;
  faults?: FaultsPatch;
  /** The base model's name when servedModels is absent (then any requested name is served). */
  modelName?: string;
  /** The base model's served names; given, other names get vLLM's 404 (see server.ts). */
  servedModels?: readonly string[];
  /** Adapters the replica can load; absent or empty: LoRA off. */
  loraAdapters?: readonly LoraAdapterSource[];
  /** GPU slots for adapters; default: the options' maxLoras, else DEFAULT_MAX_LORAS. */
  maxLoras?: number;
  /** Time to load one adapter, ms at real-GPU speed; default: the options' loraLoadMs, else DEFAULT_LORA_LOAD_MS. */
  loraLoadMs?: number;
}

export interface EmulatorOptions {
  /** Multiplies every duration of every replica (see above); default 1. */
  timeScale?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Base seed of the replicas that do not set one; default 1. */
  seed?: number;
  /**
   * A port (0 = free) for an admin server that reaches every replica, even a crashed one:
   * GET /admin/replicas, GET|POST /admin/replicas/<name>/faults. Absent: none.
   */
  adminPort?: number;
  /** maxLoras of replicas that serve adapters and do not set their own. */
  maxLoras?: number;
  /** loraLoadMs of replicas that serve adapters and do not set their own. */
  loraLoadMs?: number;
}

export interface EmulatedReplicas {
  replicas: EmulatedReplica[];
  /** The admin server, when adminPort was given. */
  admin: { port: number; address: string } | null;
  /** Closes every replica and the admin server; their ports are free when it resolves. */
  close(): Promise<void>;
}

const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_SEED = 1;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

function replicaSummary(replica: EmulatedReplica) {
  return {
    name: replica.name,
    address: replica.address,
    profile: replica.profile.name,
    models: replica.models.baseNames,
    adapters: replica.models.registeredAdapters(),
    faults: replica.faults(),
    stats: replica.stats(),
  };
}

/** The admin server: the same fault patches as each replica's /admin/faults, addressed by name. */
async function startAdminServer(replicas: EmulatedReplica[], host: string, port: number): Promise<http.Server> {
  const byName = new Map(replicas.map((replica) => [replica.name, replica]));
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/admin/replicas') return sendJson(res, 200, replicas.map(replicaSummary));
    const match = /^\/admin\/replicas\/([^/]+)\/faults$/.exec(path);
    const replica = match === null ? undefined : byName.get(decodeURIComponent(match[1]));
    if (replica === undefined) return sendJson(res, 404, { error: { message: `no route ${method} ${path}`, type: 'invalid_request_error', code: 'not_found', param: null } });
    if (method === 'GET') return sendJson(res, 200, replica.faults());
    readBody(req)
      .then(async (text) => {
        let body: unknown;
        try {
          body = text === '' ? {} : JSON.parse(text);
        } catch {
          return sendJson(res, 400, { error: { message: 'the body must be JSON', type: 'invalid_request_error', code: 'invalid_json', param: null } });
        }
        const parsed = parseFaultsPatch(body);
        if (!parsed.ok) return sendJson(res, 400, { error: { message: parsed.error, type: 'invalid_request_error', code: 'invalid_fault', param: null } });
        sendJson(res, 200, await replica.setFaults(parsed.patch));
      })
      .catch((error: unknown) => sendJson(res, 500, { error: { message: String(error), type: 'internal_server_error', code: 'internal_error', param: null } }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export async function startEmulatedReplicas(specs: readonly ReplicaSpec[], options: EmulatorOptions = {}): Promise<EmulatedReplicas> {
  const host = options.host ?? DEFAULT_HOST;
  const timeScale = options.timeScale ?? 1;
  const baseSeed = options.seed ?? DEFAULT_SEED;
  if (!(timeScale > 0 && Number.isFinite(timeScale))) throw new Error(`timeScale must be a finite number > 0, got ${timeScale}`);
  const names = new Set<string>();
  for (const spec of specs) {
    if (names.has(spec.name)) throw new Error(`duplicate replica name '${spec.name}'`);
    names.add(spec.name);
  }
  const profiles = specs.map((spec) => (typeof spec.profile === 'string' ? resolveProfile(spec.profile) : spec.profile));

  const started = await Promise.allSettled(
    specs.map((spec, index) =>
      startReplicaServer({
        name: spec.name,
        profile: profiles[index],
        port: spec.port ?? 0,
        host,
        seed: spec.seed ?? baseSeed + index,
        timeScale,
        modelName: spec.modelName,
        servedModels: spec.servedModels,
        loraAdapters: spec.loraAdapters,
        maxLoras: spec.maxLoras ?? options.maxLoras,
        loraLoadMs: spec.loraLoadMs ?? options.loraLoadMs,
        faults: spec.faults,
      }),
    ),
  );
  const replicas: EmulatedReplica[] = [];
  const failures: unknown[] = [];
  for (const result of started) {
    if (result.status === 'fulfilled') replicas.push(result.value);
    else failures.push(result.reason);
  }
  let admin: http.Server | null = null;
  if (failures.length === 0 && options.adminPort !== undefined) {
    try {
      admin = await startAdminServer(replicas, host, options.adminPort);
    } catch (error) {
      failures.push(error);
    }
  }
  const close = async () => {
    if (admin !== null) {
      const server = admin;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    await Promise.all(replicas.map((replica) => replica.close()));
  };
  if (failures.length > 0) {
    await close();
    throw failures[0];
  }
  const adminPort = admin === null ? 0 : (admin.address() as AddressInfo).port;
  return {
    replicas,
    admin: admin === null ? null : { port: adminPort, address: `${host}:${adminPort}` },
    close,
  };
}
