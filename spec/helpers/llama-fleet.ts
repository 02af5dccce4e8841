// Real llama-server replicas for the gateway specs (spec/nginx-llama.spec.ts, spec/kong-llama.spec.ts):
// started on free ports with the tiny random-weight model, and what the specs ask of them — their
// own /metrics read into the balancer's load signals, requests that occupy their slots from outside
// the gateway, and OpenAI bodies.
import { parseReplicaMetrics } from '../../shared/replica-metrics';
import type { ReplicaLoad } from '../../shared/replica-metrics';
import { startLlamaServer } from '../../testbed/lib/llama-process';
import type { LlamaServer } from '../../testbed/lib/llama-process';
import { request, stream, waitFor } from './nginx-balancer';
import type { Stream } from './nginx-balancer';

export const JSON_HEADERS = { 'content-type': 'application/json' };

/** Replicas A and B serve `random-llama`, C serves `other-llama` (for discovery). Two slots each. */
export async function startLlamaFleet(): Promise<{ a: LlamaServer; b: LlamaServer; c: LlamaServer; all: LlamaServer[] }> {
  const [a, b, c] = await Promise.all([
    startLlamaServer({ alias: 'random-llama' }),
    startLlamaServer({ alias: 'random-llama' }),
    startLlamaServer({ alias: 'other-llama' }),
  ]);
  return { a, b, c, all: [a, b, c] };
}

export function address(server: LlamaServer): string {
  return `127.0.0.1:${server.port}`;
}

export async function loadOf(server: LlamaServer): Promise<ReplicaLoad> {
  const reply = await request(server.url + '/metrics');
  if (reply.status !== 200) throw new Error(`llama-server on ${server.port} answered /metrics with ${reply.status}`);
  return parseReplicaMetrics(reply.body);
}

/** A chat completion body; `long` asks for many tokens whatever the random model samples (ignore_eos); `system` leads with that system message. */
export function chatBody(model: string, content: string, options: { maxTokens?: number; stream?: boolean; long?: boolean; system?: string } = {}): string {
  const messages = [{ role: 'user', content }];
  if (options.system !== undefined) messages.unshift({ role: 'system', content: options.system });
  const body: Record<string, unknown> = { model, messages, max_tokens: options.maxTokens ?? 8 };
  if (options.stream) body.stream = true;
  if (options.long) body.ignore_eos = true;
  return JSON.stringify(body);
}

/**
 * Fills `server`'s two slots and defers one more request, straight to the server (the gateway does
 * not see them), and resolves once its /metrics reports 2 running, 1 waiting. Abort the streams to
 * free it (also when the wait fails: the streams are aborted then).
 */
export async function occupy(server: LlamaServer): Promise<Stream[]> {
  const body = JSON.stringify({ model: 'random-llama', prompt: 'busy', max_tokens: 1_000_000, ignore_eos: true, stream: true });
  const streams = [0, 1, 2].map(() => stream(server.url + '/v1/completions', { body, headers: JSON_HEADERS }));
  try {
    await waitFor(`llama-server on ${server.port} reports 2 running and 1 deferred`, async () => {
      const load = await loadOf(server);
      return load.running === 2 && load.waiting === 1;
    }, 10_000);
  } catch (error) {
    for (const s of streams) s.abort();
    throw error;
  }
  return streams;
}

/** Waits until `baseUrl`'s GET /v1/models (answered by the gateway from discovery) lists both models the fleet serves. */
export async function modelsKnown(baseUrl: string): Promise<void> {
  await waitFor(
    'GET /v1/models answered from both models the replicas serve',
    async () => {
      const reply = await request(baseUrl + '/v1/models');
      if (reply.status !== 200) return false;
      const ids = (JSON.parse(reply.body) as { data?: Array<{ id: string }> }).data?.map((m) => m.id) ?? [];
      return ids.includes('random-llama') && ids.includes('other-llama');
    },
    15_000,
  );
}

/** A long system prompt for requests that share a prefix (a llama-server slot then reuses its cached tokens). */
export const SHARED_SYSTEM_PROMPT = 'You are a helpful assistant for the llm-balancer project. '.repeat(8);

/** The sum of counters that may be null (not reported, or stale): null counts 0. */
export function sumOf(values: Array<number | null>): number {
  return values.reduce<number>((sum, value) => sum + (value === null ? 0 : value), 0);
}

/** The events of an SSE body, `data: ` stripped. */
export function sseData(body: string): string[] {
  return body
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice(6));
}

/**
 * `total` requests from four clients, each sending the next as soon as its last is answered;
 * `server` is killed once `killAfter` answers are in. The statuses, in order of answer.
 */
export async function killMidRun(server: LlamaServer, send: (i: number) => Promise<number>, total = 16, killAfter = 4): Promise<number[]> {
  let sent = 0;
  let answered = 0;
  const statuses: number[] = [];
  const client = async () => {
    while (sent < total) {
      statuses.push(await send(sent++));
      answered++;
    }
  };
  const clients = [client(), client(), client(), client()];
  await waitFor('a few answers before the kill', () => answered >= killAfter, 20_000);
  await server.kill();
  await Promise.all(clients);
  return statuses;
}
