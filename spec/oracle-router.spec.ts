// The oracle router (testbed/oracle/router.ts) routes by the emulated replicas' true state: a prompt
// goes where its prefix is really cached, a new prompt avoids the replica carrying a long decode,
// answers (streamed ones too) pass through unchanged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatedReplicas } from '../testbed/emulator/index';
import type { EmulatedReplicas } from '../testbed/emulator/index';
import { startOracleRouter } from '../testbed/oracle/router';
import type { OracleRouter } from '../testbed/oracle/router';
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
