// The oracle router (testbed/oracle/router.ts) routes by the emulated replicas' true state: a prompt
// goes where its prefix is really cached, a new prompt avoids the replica carrying a long decode,
// answers (streamed ones too) pass through unchanged. And the emulator's cli starts it beside its
// replicas with --oracle (how the shootout's `oracle` row gets it), weighing their --weights.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplica, EmulatedReplicas } from '../testbed/emulator/index';
import { oraclePick, startOracleRouter } from '../testbed/oracle/router';
import type { OracleRouter } from '../testbed/oracle/router';
import { startJsonChild } from '../testbed/lib/json-child';
import type { JsonChild } from '../testbed/lib/json-child';
import { REPO_ROOT } from '../testbed/lib/nginx-env';
import { request, stream, waitFor } from './helpers/nginx-balancer';

describe('the oracle router', () => {
  let emulator: EmulatedReplicas;
  let oracle: OracleRouter;

  beforeAll(async () => {
    emulator = await startEmulatedReplicas(
      [
        { name: 'r0', profile: 'h100', seed: 1 },
        { name: 'r1', profile: 'h100', seed: 1 },
      ],
      { timeScale: 0.05 },
    );
    oracle = await startOracleRouter(emulator.replicas);
  });

  afterAll(async () => {
    await oracle?.stop();
    await emulator?.close();
  });

  const chat = (system: string, user: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ messages: [{ role: 'system', content: system }, { role: 'user', content: user }], max_tokens: 4, ...extra });
  const send = (body: string) => request(oracle.url + '/v1/chat/completions', { body, headers: { 'content-type': 'application/json' } });

  it('sends a prompt where its prefix is cached, and a new one away from a replica carrying a long decode', async () => {
    const system = 'You answer questions about the shipping manual. '.repeat(20);
    expect((await send(chat(system, 'first'))).status).toBe(200);
    const first = oracle.picks();
    const warm = first.indexOf(1);
    expect((await send(chat(system, 'second question'))).status).toBe(200);
    expect(oracle.picks()[warm]).toBe(2);
    // A long streamed answer on the warm replica; a prompt cached nowhere then goes to the other.
    const long = stream(oracle.url + '/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat(system, 'a long one', { max_tokens: 3000, stream: true }) });
    await waitFor('the long answer to stream', () => long.received().includes('data: '));
    expect(oracle.picks()[warm]).toBe(3);
    expect((await send(chat('A different manual entirely. '.repeat(20), 'hello'))).status).toBe(200);
    expect(oracle.picks()[1 - warm]).toBe(1);
    const body = await long.done;
    expect(long.status()).toBe(200);
    expect(body).toContain('data: [DONE]');
  });
});

describe("the oracle's overlap weight", () => {
  // A replica seen only through what the oracle reads: its carried blocks and what it has cached.
  const replica = (kvBlocksUsed: number, cachedTokens: number) =>
    ({ stats: () => ({ kvBlocksUsed, kvBlocksWaiting: 0 }), cachedPrefix: () => ({ promptTokens: 640, cachedTokens }) }) as unknown as EmulatedReplica;
  // The prompt (40 blocks) is cached on a replica carrying 100 blocks; the other is idle and cold.
  const replicas = [replica(100, 624), replica(0, 0)];

  it.each([
    [1, 1],
    [2, 1],
    [4, 0],
    [8, 0],
  ])('at weight %d picks replica %d: a cached prefix wins once its prefill blocks outweigh the load', (overlapWeight, expected) => {
    expect(oraclePick(replicas, [1, 1], {}, overlapWeight)).toBe(expected);
  });
});

describe('the emulator cli with --oracle', () => {
  let child: JsonChild<{ replicas: Array<{ name: string; address: string }>; oracle: string | null }>;

  beforeAll(async () => {
    child = await startJsonChild(
      path.join(REPO_ROOT, 'testbed', 'emulator', 'cli.ts'),
      ['--replicas', 'h100,h100', '--time-scale', '0.05', '--oracle', '--weights', '1,2', '--json'],
      'the emulator with its oracle',
    );
  }, 30_000);

  afterAll(async () => {
    await child?.stop();
  });

  const chat = (system: string, user: string) => JSON.stringify({ messages: [{ role: 'system', content: system }, { role: 'user', content: user }], max_tokens: 4 });
  const post = (base: string, body: string) => request(`http://${base}/v1/chat/completions`, { body, headers: { 'content-type': 'application/json' } });

  it('announces the router beside the replicas; it weighs their --weights and their true caches', async () => {
    const [first, second] = child.ready.replicas;
    expect(child.ready.oracle).toMatch(/^127\.0\.0\.1:\d+$/);
    const oracle = child.ready.oracle as string;
    // A prompt cached nowhere: the weight-2 replica prefills it for half the cost.
    const cold = await post(oracle, chat('A manual nobody has read yet. '.repeat(40), 'hello'));
    expect(cold.status).toBe(200);
    expect(cold.headers['x-llm-replica']).toBe(second.name);
    // The first replica is warmed directly, behind the oracle's back: it reads the cache, not its own history.
    const system = 'You answer questions about the shipping manual. '.repeat(40);
    expect((await post(first.address, chat(system, 'first'))).status).toBe(200);
    const warm = await post(oracle, chat(system, 'second question'));
    expect(warm.status).toBe(200);
    expect(warm.headers['x-llm-replica']).toBe(first.name);
  });
});
