// One emulated vLLM replica behind an HTTP port: the OpenAI-compatible API over the engine of
// model.ts, vLLM's /health and /metrics, and fault injection (faults.ts).
//
// Endpoints
//   POST /v1/chat/completions, POST /v1/completions   streaming (SSE) or one JSON body
//   GET  /v1/models                                   served base names, then registered LoRA adapters
//   GET  /health                                      200 {} (503 while the `unhealthy` fault is on)
//   GET  /metrics                                     Prometheus text, vLLM names, true values (metrics.ts)
//   GET  /admin/faults, POST /admin/faults            the current faults; a JSON patch of them
// Every response carries `x-llm-replica: <name>`; every completion body and chunk carries
// `"system_fingerprint": "<name>"`, so a client behind a gateway can tell which replica answered.
//
// Streaming answers send their headers as soon as the request is validated, before the request is
// even scheduled, because vLLM does (its API server returns a StreamingResponse right away and
// uvicorn writes the headers at once). So the time to the response HEADER of a stream is not its
// TTFT, with vLLM or here; the first `data:` event is.
//
// Models (served-models.ts): a replica given `servedModels` answers only to those names and to its
// LoRA adapters, and refuses any other `model` with vLLM's 404 NotFoundError body. A replica NOT
// given `servedModels` keeps the emulator's old behaviour and serves any name with its base model
// (modelName), so the specs and benchmarks that send `model: 'm'` keep working; only adapter names
// are told apart there. Answers name the first served base name, or the adapter.
//
// LoRA (vLLM --enable-lora): `loraAdapters` lists the adapters a replica can load (by name, or by
// name prefix as a runtime resolver finds them), `maxLoras` its GPU slots (default
// DEFAULT_MAX_LORAS, where vLLM's is 1: see lora-slots.ts), `loraLoadMs` the time to load one
// (DEFAULT_LORA_LOAD_MS). model.ts schedules them; metrics.ts adds vllm:lora_requests_info.
//
// /v1/models lists REGISTERED adapters, as vLLM does: named ones from the start (they are
// vLLM's --lora-modules, registered at startup) and pattern matches once first requested (a
// resolver registers them then). Whether an adapter is resident in a GPU slot right now does not
// change the listing, in vLLM or here; vllm:lora_requests_info and the llm_emulator_lora_* counters
// are where that shows.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Random } from '../../shared/types';
import { createRealClock } from './clock';
import type { EngineClock } from './clock';
import { createCompletionPlanner, seededRandom } from './content';
import type { CompletionPlanner, FinishReason } from './content';
import { NO_FAULTS, applyFaults, parseFaultsPatch } from './faults';
import type { Faults, FaultsPatch } from './faults';
import { DEFAULT_LORA_LOAD_MS, DEFAULT_MAX_LORAS } from './lora-slots';
import { INTER_TOKEN_BUCKETS_S, TTFT_BUCKETS_S, createHistogram, createLoraInfoSeries, renderMetrics } from './metrics';
import type { Histogram, LoraInfoSeries } from './metrics';
import { createEngine } from './model';
import type { Engine, EngineStats, Sequence } from './model';
import type { ReplicaProfile } from './profiles';
import { createServedModels } from './served-models';
import type { LoraAdapterSource, ServedModels } from './served-models';
import { chatTokenIds, textTokenIds } from './tokens';
import type { ChatMessage } from './tokens';

/** What /v1/models lists and every answer names, unless a replica is given another. */
export const DEFAULT_MODEL_NAME = 'emulated-llama-3.1-8b';

/** Request bodies above this are refused with 413: fasthttp's default, which llm-d-inference-sim keeps. */
export const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The fault stream's seed is the replica's seed xor this, so injected errors do not shift the answers' content. */
const FAULT_SEED_SALT = 0x5eed_fa17;

export interface ReplicaServerOptions {
  name: string;
  profile: ReplicaProfile;
  /** 0: a free port. */
  port: number;
  host: string;
  seed: number;
  timeScale: number;
  /** The base model's name when servedModels is absent (then any requested name is served). */
  modelName?: string;
  /** The base model's served names (vLLM --served-model-name); given: other names get a 404. */
  servedModels?: readonly string[];
  /** Adapters this replica can load; absent or empty: LoRA off (vLLM without --enable-lora). */
  loraAdapters?: readonly LoraAdapterSource[];
  /** GPU slots for adapters (vLLM --max-loras); default DEFAULT_MAX_LORAS. */
  maxLoras?: number;
  /** Time to load a missing adapter, ms at real-GPU speed; default DEFAULT_LORA_LOAD_MS. */
  loraLoadMs?: number;
  faults?: FaultsPatch;
  /** Defaults to the real clock; a test may drive the engine's clock itself. */
  clock?: EngineClock;
  /** Wall-clock milliseconds for timestamps (`created`, vllm:lora_requests_info); default Date.now. */
  wallClockMs?: () => number;
}

export interface ReplicaStats extends EngineStats {
  /** Inference requests received (valid or not, faulted or not) since start. */
  requests: number;
  /** Answered 500 by the errorRate fault. */
  injectedErrors: number;
  /** Answered 4xx (invalid, or longer than the KV cache). */
  rejected: number;
  /** Times the replica came back from a crash (each with a fresh engine: its counters restart). */
  restarts: number;
}

export interface EmulatedReplica {
  readonly name: string;
  readonly port: number;
  /** host:port */
  readonly address: string;
  readonly profile: ReplicaProfile;
  /** The name answers carry for the base model (the first served name). */
  readonly modelName: string;
  readonly models: ServedModels;
  /** Applies a patch (only the given fields change); resolves once a crash or restart has happened. */
  setFaults(patch: FaultsPatch): Promise<Faults>;
  faults(): Faults;
  stats(): ReplicaStats;
  /**
   * The true prefix-cache state for an OpenAI request body (chat `messages` or completion `prompt`),
   * read without touching it, for an oracle router: its prompt tokens and how many of them this
   * replica would find cached now (Engine.cachedPrefixTokens); null for a body it would refuse.
   */
  cachedPrefix(body: unknown): { promptTokens: number; cachedTokens: number } | null;
  /** Stops listening, destroys connections, stops the engine. */
  close(): Promise<void>;
}

type CompletionKind = 'chat' | 'text';

interface CompletionRequest {
  kind: CompletionKind;
  /** The request's `model` field as sent (served-models.ts resolves it). */
  model: unknown;
  promptTokenIds: number[];
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
}

type Parsed = { ok: true; request: CompletionRequest } | { ok: false; message: string; param: string | null };

/** OpenAI's error body (shared/errors.ts has the gateway's own; here param may name a field). */
interface OpenAiError {
  error: { message: string; type: string; code: string; param: string | null };
}

function openAiError(message: string, type: string, code: string, param: string | null = null): OpenAiError {
  return { error: { message, type, code, param } };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function parseMessages(value: unknown): ChatMessage[] | string {
  if (!Array.isArray(value) || value.length === 0) return 'messages must be a non-empty array';
  for (let i = 0; i < value.length; i++) {
    const message = value[i];
    if (!isObject(message) || typeof message.role !== 'string') return `messages[${i}] must be an object with a string role`;
    const content = message.content;
    if (content !== undefined && content !== null && typeof content !== 'string' && !Array.isArray(content)) {
      return `messages[${i}].content must be a string, an array of parts or null`;
    }
  }
  return value as ChatMessage[];
}

function isTokenArray(value: unknown): value is number[] {
  return Array.isArray(value) && value.length > 0 && value.every((id) => Number.isInteger(id) && id >= 0);
}

/** A single prompt: a string, a token-id array, or a one-element array of either (batches are not emulated). */
function parsePrompt(value: unknown): number[] | string {
  if (typeof value === 'string') return textTokenIds(value);
  if (isTokenArray(value)) return value.slice();
  if (Array.isArray(value) && value.length === 1) {
    if (typeof value[0] === 'string') return textTokenIds(value[0]);
    if (isTokenArray(value[0])) return value[0].slice();
  }
  return 'prompt must be a string, an array of token ids, or a one-element array of either';
}

function parseCompletionRequest(kind: CompletionKind, body: unknown): Parsed {
  if (!isObject(body)) return { ok: false, message: 'the request body must be a JSON object', param: null };
  let promptTokenIds: number[];
  if (kind === 'chat') {
    const messages = parseMessages(body.messages);
    if (typeof messages === 'string') return { ok: false, message: messages, param: 'messages' };
    promptTokenIds = chatTokenIds(messages);
  } else {
    const prompt = parsePrompt(body.prompt);
    if (typeof prompt === 'string') return { ok: false, message: prompt, param: 'prompt' };
    promptTokenIds = prompt;
  }
  let maxTokens: number | undefined;
  for (const param of ['max_completion_tokens', 'max_tokens']) {
    const value = body[param];
    if (value === undefined || value === null) continue;
    if (!Number.isInteger(value) || (value as number) < 1) return { ok: false, message: `${param} must be an integer >= 1`, param };
    maxTokens = value as number;
    break;
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    return { ok: false, message: 'stream must be a boolean', param: 'stream' };
  }
  const streamOptions = body.stream_options;
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true;
  return { ok: true, request: { kind, model: body.model, promptTokenIds, maxTokens, stream: body.stream === true, includeUsage } };
}

class BodyTooLarge extends Error {}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > MAX_BODY_BYTES) {
        reject(new BodyTooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export async function startReplicaServer(options: ReplicaServerOptions): Promise<EmulatedReplica> {
  const name = options.name;
  const profile = options.profile;
  const models = createServedModels({
    servedModels: options.servedModels,
    fallbackModelName: options.modelName ?? DEFAULT_MODEL_NAME,
    loraAdapters: options.loraAdapters,
  });
  const modelName = models.baseNames[0];
  const loraEnabled = options.loraAdapters !== undefined && options.loraAdapters.length > 0;
  const maxLoras = options.maxLoras ?? DEFAULT_MAX_LORAS;
  const loraLoadMs = options.loraLoadMs ?? DEFAULT_LORA_LOAD_MS;
  const wallClockMs = options.wallClockMs ?? Date.now;
  const clock = options.clock ?? createRealClock();
  const planner: CompletionPlanner = createCompletionPlanner(options.seed, profile.output);
  const faultRandom: Random = seededRandom(options.seed ^ FAULT_SEED_SALT);

  let faults: Faults = Object.assign({}, NO_FAULTS);
  let engine: Engine = newEngine();
  let port = options.port;
  let listening = false;
  let closed = false;
  let completionCount = 0;
  const counters = { requests: 0, injectedErrors: 0, rejected: 0, restarts: 0 };
  let finished: Record<FinishReason, number> = { stop: 0, length: 0 };
  let ttftSeconds: Histogram = createHistogram(TTFT_BUCKETS_S);
  let interTokenSeconds: Histogram = createHistogram(INTER_TOKEN_BUCKETS_S);
  let loraInfo: LoraInfoSeries = createLoraInfoSeries();

  function newEngine(): Engine {
    const created = createEngine({
      profile,
      clock,
      timeScale: options.timeScale,
      lora: loraEnabled ? { maxLoras, loadMs: loraLoadMs } : undefined,
      // vLLM sets vllm:lora_requests_info each time the engine reports stats: after every step.
      onStepEnd: loraEnabled ? () => loraInfo.record(engine.stats().lora?.activity ?? [], wallClockMs() / 1000) : undefined,
    });
    created.setSlowdown(faults.slowdown);
    created.setStalled(faults.hang);
    return created;
  }

  const server = http.createServer((req, res) => {
    res.setHeader('x-llm-replica', name);
    handle(req, res).catch((error: unknown) => {
      if (error instanceof BodyTooLarge) {
        sendJson(res, 413, openAiError(`request body larger than ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', 'body_too_large'));
      } else if (!res.headersSent) {
        sendJson(res, 500, openAiError(String(error), 'internal_server_error', 'internal_error'));
      } else {
        res.destroy();
      }
    });
  });
  // Benchmarks open many streams to the same replica through a gateway's keepalive pool.
  server.keepAliveTimeout = 60_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://emulator').pathname;
    const method = req.method ?? 'GET';
    if (path === '/v1/chat/completions' || path === '/v1/completions') {
      if (method !== 'POST') return sendJson(res, 405, openAiError('use POST', 'invalid_request_error', 'method_not_allowed'));
      return complete(path === '/v1/chat/completions' ? 'chat' : 'text', await readBody(req), res);
    }
    if (method === 'GET' && path === '/health') {
      return faults.unhealthy ? sendJson(res, 503, { status: 'unhealthy' }) : sendJson(res, 200, {});
    }
    if (method === 'GET' && path === '/metrics') {
      const lora = loraEnabled ? { maxLoras, series: loraInfo } : undefined;
      const text = renderMetrics({ modelName, engine: engine.stats(), lora, finished, ttftSeconds, interTokenSeconds });
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(text);
      return;
    }
    if (method === 'GET' && path === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: models.cards(profile.kvCacheTokens, Math.floor(wallClockMs() / 1000)) });
    }
    if (path === '/admin/faults') {
      if (method === 'GET') return sendJson(res, 200, faults);
      if (method !== 'POST') return sendJson(res, 405, openAiError('use GET or POST', 'invalid_request_error', 'method_not_allowed'));
      return adminFaults(await readBody(req), res);
    }
    sendJson(res, 404, openAiError(`no route ${method} ${path}`, 'invalid_request_error', 'not_found'));
  }

  async function adminFaults(text: string, res: http.ServerResponse): Promise<void> {
    let body: unknown;
    try {
      body = text === '' ? {} : JSON.parse(text);
    } catch {
      return sendJson(res, 400, openAiError('the body must be JSON', 'invalid_request_error', 'invalid_json'));
    }
    const parsed = parseFaultsPatch(body);
    if (!parsed.ok) return sendJson(res, 400, openAiError(parsed.error, 'invalid_request_error', 'invalid_fault'));
    if (parsed.patch.crash === true && !faults.crash) {
      // Answer first: the crash destroys this very connection.
      res.on('finish', () => {
        setFaults(parsed.patch).catch(() => undefined);
      });
      return sendJson(res, 200, applyFaults(faults, parsed.patch));
    }
    sendJson(res, 200, await setFaults(parsed.patch));
  }

  function complete(kind: CompletionKind, text: string, res: http.ServerResponse): void {
    counters.requests++;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      counters.rejected++;
      return sendJson(res, 400, openAiError('the body must be JSON', 'invalid_request_error', 'invalid_json'));
    }
    const parsed = parseCompletionRequest(kind, body);
    if (!parsed.ok) {
      counters.rejected++;
      return sendJson(res, 400, openAiError(parsed.message, 'invalid_request_error', 'invalid_value', parsed.param));
    }
    const resolved = models.resolve(parsed.request.model);
    if (!resolved.ok) {
      counters.rejected++;
      return sendJson(res, resolved.status, resolved.body);
    }
    if (faults.errorRate > 0 && faultRandom.next() < faults.errorRate) {
      counters.injectedErrors++;
      return sendJson(res, 500, openAiError(`injected error (errorRate ${faults.errorRate}) on ${name}`, 'internal_server_error', 'injected_fault'));
    }
    const request = parsed.request;
    const plan = planner.plan(request.maxTokens);
    const prefix = kind === 'chat' ? 'chatcmpl-' : 'cmpl-';
    const id = `${prefix}${name}-${++completionCount}`;
    const created = Math.floor(Date.now() / 1000);
    const object = kind === 'chat' ? (request.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
    const envelope = { id, object, created, model: resolved.answerModel, system_fingerprint: name };
    const promptTokens = request.promptTokenIds.length;
    const usage = (completionTokens: number) => ({ prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens });

    let done = false;
    let content = '';
    let previousTokenAt = 0;
    let sequence: Sequence | null = null;
    const writeEvent = (payload: unknown) => res.write('data: ' + JSON.stringify(payload) + '\n\n');
    const chunk = (choice: Record<string, unknown>) => {
      const payload: Record<string, unknown> = Object.assign({}, envelope, { choices: [Object.assign({ index: 0 }, choice)] });
      if (request.includeUsage) payload.usage = null;
      writeEvent(payload);
    };

    const submitted = engine.submit(
      { promptTokenIds: request.promptTokenIds, outputTokens: plan.outputTokens, reservedOutputTokens: plan.reservedOutputTokens, adapter: resolved.adapter },
      {
        onToken(index, atMs) {
          const word = plan.nextWord();
          if (index === 0) ttftSeconds.observe((atMs - (sequence as Sequence).arrivedAt) / 1000);
          else interTokenSeconds.observe((atMs - previousTokenAt) / 1000);
          previousTokenAt = atMs;
          if (!request.stream) {
            content += word;
            return;
          }
          if (kind === 'chat') {
            // vLLM and OpenAI open a chat stream with a role-only delta.
            if (index === 0) chunk({ delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
            chunk({ delta: { content: word }, logprobs: null, finish_reason: null });
          } else {
            chunk({ text: word, logprobs: null, finish_reason: null });
          }
        },
        onFinish() {
          done = true;
          finished[plan.finishReason]++;
          const completionTokens = plan.outputTokens;
          if (!request.stream) {
            const choice =
              kind === 'chat'
                ? { index: 0, message: { role: 'assistant', content }, logprobs: null, finish_reason: plan.finishReason }
                : { index: 0, text: content, logprobs: null, finish_reason: plan.finishReason };
            return sendJson(res, 200, Object.assign({}, envelope, { choices: [choice], usage: usage(completionTokens) }));
          }
          chunk(kind === 'chat' ? { delta: {}, logprobs: null, finish_reason: plan.finishReason } : { text: '', logprobs: null, finish_reason: plan.finishReason });
          if (request.includeUsage) writeEvent(Object.assign({}, envelope, { choices: [], usage: usage(completionTokens) }));
          res.end('data: [DONE]\n\n');
        },
      },
    );
    if (!submitted.ok) {
      counters.rejected++;
      const message =
        `This model's maximum context length is ${submitted.capacityTokens} tokens. However, you requested ` +
        `${submitted.neededTokens} tokens (${promptTokens} in the messages, ${submitted.neededTokens - promptTokens} in the completion).`;
      return sendJson(res, 400, openAiError(message, 'invalid_request_error', 'context_length_exceeded', kind === 'chat' ? 'messages' : 'prompt'));
    }
    sequence = submitted.sequence;
    // A client that goes away aborts its request, as vLLM aborts on disconnect: its KV blocks free up.
    res.on('close', () => {
      if (!done) (sequence as Sequence).cancel();
    });
    if (request.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
    }
  }

  function listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      server.once('error', onError);
      server.listen(port, options.host, () => {
        server.off('error', onError);
        port = (server.address() as AddressInfo).port;
        listening = true;
        resolve();
      });
    });
  }

  function stopListening(): Promise<void> {
    if (!listening) return Promise.resolve();
    listening = false;
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async function crash(): Promise<void> {
    await stopListening();
    // The process "died": everything in GPU memory (queues, KV and prefix caches) and its counters
    // are gone. The replacement engine starts empty, as a restarted vLLM would.
    engine.close();
    engine = newEngine();
    finished = { stop: 0, length: 0 };
    ttftSeconds = createHistogram(TTFT_BUCKETS_S);
    interTokenSeconds = createHistogram(INTER_TOKEN_BUCKETS_S);
    loraInfo = createLoraInfoSeries();
  }

  async function applyPatch(patch: FaultsPatch): Promise<Faults> {
    const previous = faults;
    faults = applyFaults(previous, patch);
    engine.setSlowdown(faults.slowdown);
    engine.setStalled(faults.hang);
    if (!closed && faults.crash && !previous.crash) await crash();
    if (!closed && !faults.crash && previous.crash) {
      try {
        await listen();
        counters.restarts++;
      } catch (error) {
        faults = Object.assign({}, faults, { crash: true });
        throw error;
      }
    }
    return Object.assign({}, faults);
  }

  // Changes apply one at a time: a crash must finish closing before a restart listens again.
  let queue: Promise<unknown> = Promise.resolve();
  function setFaults(patch: FaultsPatch): Promise<Faults> {
    const run = queue.then(() => applyPatch(patch));
    queue = run.catch(() => undefined);
    return run;
  }

  await listen();
  if (options.faults !== undefined) await setFaults(options.faults);

  return {
    name,
    get port() {
      return port;
    },
    get address() {
      return `${options.host}:${port}`;
    },
    profile,
    modelName,
    models,
    setFaults,
    faults: () => Object.assign({}, faults),
    stats: () => Object.assign(engine.stats(), counters),
    cachedPrefix(body: unknown) {
      const parsed = parseCompletionRequest(isObject(body) && body.messages !== undefined ? 'chat' : 'text', body);
      if (!parsed.ok) return null;
      return { promptTokens: parsed.request.promptTokenIds.length, cachedTokens: engine.cachedPrefixTokens(parsed.request.promptTokenIds) };
    },
    async close() {
      closed = true;
      await queue;
      await stopListening();
      engine.close();
    },
  };
}
