// Arrivals and request mixes of the load generator: statistical checks with fixed seeds (so every
// run sees the same numbers) and bounds a few standard errors wide, plus exact checks of what
// every request carries.
import { describe, expect, it } from 'vitest';
import {
  MIXES,
  REQUEST_SHAPES,
  SHARED_PREFIX_SHAPE,
  MANY_PREFIXES_SHAPE,
  FLEET_PREFIXES_SHAPE,
  buildTrace,
  createRandom,
  generateRequests,
  poissonArrivalTimesMs,
  resolveMix,
  tokensByCharRule,
  uniformArrivalTimesMs,
  type ChatCompletionBody,
  type CompletionBody,
  type LoadRequest,
} from '../testbed/loadgen/index';
import { PROFILES } from '../testbed/emulator/index';

function gapsOf(times: number[]): number[] {
  return times.map((at, i) => at - (i === 0 ? 0 : times[i - 1]));
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / values.length;
}

function variance(values: number[]): number {
  const m = mean(values);
  return values.reduce((sum, value) => sum + (value - m) ** 2, 0) / (values.length - 1);
}

/** Arrivals per 1-second window over [0, durationS). */
function countsPerSecond(times: number[], durationS: number): number[] {
  const counts = new Array<number>(durationS).fill(0);
  for (const at of times) counts[Math.floor(at / 1000)]++;
  return counts;
}

function messagesOf(request: LoadRequest): Array<{ role: string; content: string }> {
  return (request.body as ChatCompletionBody).messages;
}

/** 10,000 arrivals expected for each: rate × duration. */
const POISSON_CASES = [
  { seed: 1, ratePerS: 10, durationS: 1000 },
  { seed: 42, ratePerS: 2, durationS: 5000 },
  { seed: 7, ratePerS: 200, durationS: 50 },
];

describe('Poisson arrivals', () => {
  it.each(POISSON_CASES)('seed $seed at $ratePerS/s: exponential gaps (mean 1/rate, CV 1)', ({ seed, ratePerS, durationS }) => {
    const gaps = gapsOf(poissonArrivalTimesMs(createRandom(seed, 'arrivals'), ratePerS, durationS));
    const meanGap = mean(gaps);
    // Standard error of the mean of 10^4 exponential gaps is 1% of it: 3% is 3 standard errors.
    expect(Math.abs(meanGap - 1000 / ratePerS) / (1000 / ratePerS)).toBeLessThan(0.03);
    // The exponential's coefficient of variation is exactly 1; its sample error here is ~1.4%.
    const cv = Math.sqrt(variance(gaps)) / meanGap;
    expect(Math.abs(cv - 1)).toBeLessThan(0.05);
    expect(Math.min(...gaps)).toBeGreaterThan(0);
  });

  // 1000 one-second windows each: the index's standard error is sqrt(2/999) ≈ 0.045.
  it.each([
    { seed: 1, ratePerS: 10 },
    { seed: 42, ratePerS: 2 },
    { seed: 7, ratePerS: 200 },
  ])('seed $seed at $ratePerS/s: counts per second have index of dispersion ≈ 1', ({ seed, ratePerS }) => {
    const durationS = 1000;
    const counts = countsPerSecond(poissonArrivalTimesMs(createRandom(seed, 'arrivals'), ratePerS, durationS), durationS);
    // Poisson counts: variance = mean. 0.8–1.2 is over 4 standard errors; a uniform schedule gives
    // 0, a bursty one far above 1.
    const dispersion = variance(counts) / mean(counts);
    expect(dispersion).toBeGreaterThan(0.8);
    expect(dispersion).toBeLessThan(1.2);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])('seed %i: trace length is rate × duration within 4 standard deviations', (seed) => {
    const trace = buildTrace({ seed, ratePerS: 20, durationS: 50, mix: 'short-chat' });
    const expected = 20 * 50;
    expect(Math.abs(trace.entries.length - expected)).toBeLessThanOrEqual(4 * Math.sqrt(expected));
  });

  it('every arrival lies in [0, duration) in ascending order', () => {
    const times = poissonArrivalTimesMs(createRandom(3, 'arrivals'), 50, 20);
    expect(times[0]).toBeGreaterThanOrEqual(0);
    expect(times[times.length - 1]).toBeLessThan(20_000);
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThan(times[i - 1]);
  });
});

describe('uniform arrivals', () => {
  it.each([
    { ratePerS: 5, durationS: 2, count: 10 },
    { ratePerS: 3, durationS: 1, count: 3 },
    { ratePerS: 0.5, durationS: 10, count: 5 },
    { ratePerS: 100, durationS: 30, count: 3000 },
  ])('$ratePerS/s for $durationS s: $count arrivals, equal gaps, no variance', ({ ratePerS, durationS, count }) => {
    const times = uniformArrivalTimesMs(ratePerS, durationS);
    expect(times).toHaveLength(count);
    expect(times[0]).toBe(0);
    const gaps = gapsOf(times).slice(1);
    for (const gap of gaps) expect(gap).toBeCloseTo(1000 / ratePerS, 9);
    if (gaps.length > 1) expect(variance(gaps)).toBeLessThan(1e-12);
  });

  it('per-second counts are constant (index of dispersion 0)', () => {
    const trace = buildTrace({ seed: 1, ratePerS: 10, durationS: 100, mix: 'short-chat', arrivals: 'uniform' });
    const counts = countsPerSecond(trace.entries.map((entry) => entry.atMs), 100);
    expect(new Set(counts)).toEqual(new Set([10]));
  });
});

describe('traces', () => {
  const options = { seed: 11, ratePerS: 8, durationS: 20, mix: 'mixed' };

  it('the same seed gives the same trace, byte for byte', () => {
    expect(JSON.stringify(buildTrace(options))).toBe(JSON.stringify(buildTrace(options)));
  });

  it('a different seed gives different arrival times and different prompts', () => {
    const a = buildTrace(options);
    const b = buildTrace({ ...options, seed: 12 });
    expect(a.entries.map((entry) => entry.atMs)).not.toEqual(b.entries.map((entry) => entry.atMs));
    expect(messagesOf(a.entries[0].request)).not.toEqual(messagesOf(b.entries[0].request));
  });

  it('arrival times of a seed do not depend on the mix (separate random streams)', () => {
    const chat = buildTrace({ ...options, mix: 'short-chat' });
    const shared = buildTrace({ ...options, mix: 'shared-prefix' });
    expect(chat.entries.map((entry) => entry.atMs)).toEqual(shared.entries.map((entry) => entry.atMs));
  });

  it('survives a JSON round trip unchanged (replayable from a file)', () => {
    const trace = buildTrace({ ...options, mix: 'shared-prefix' });
    expect(JSON.parse(JSON.stringify(trace))).toEqual(trace);
  });

  it.each([
    [{ ...options, mix: 'no-such-mix' }, /unknown mix 'no-such-mix'/],
    [{ ...options, ratePerS: 0 }, /ratePerS/],
    [{ ...options, durationS: -1 }, /durationS/],
  ])('refuses %j', (bad, message) => {
    expect(() => buildTrace(bad)).toThrow(message);
  });
});

describe('request mixes', () => {
  const SAMPLE = 10_000;

  it.each([
    ['mixed', { 'short-chat': 0.5, 'long-prompt': 0.25, 'long-generation': 0.25 }],
    ['short-chat', { 'short-chat': 1 }],
    ['shared-prefix', { 'shared-prefix': 1 }],
    ['hot-prefix', { 'hot-prefix': 1 }],
    ['many-prefixes', { 'many-prefixes': 1 }],
    ['fleet-prefixes', { 'fleet-prefixes': 1 }],
  ] as const)('%s: kind shares match the weights over 10,000 requests', (mix, expected) => {
    const requests = generateRequests(SAMPLE, { seed: 5, mix, model: 'm' });
    const shares: Record<string, number> = {};
    for (const request of requests) shares[request.kind] = (shares[request.kind] ?? 0) + 1 / SAMPLE;
    expect(Object.keys(shares).sort()).toEqual(Object.keys(expected).sort());
    // A share of 0.5 over 10^4 draws has a standard error of 0.005: 0.02 is 4 of them.
    for (const [kind, share] of Object.entries(expected)) expect(Math.abs(shares[kind] - share)).toBeLessThan(0.02);
  });

  it('a custom mix is honoured (1 : 3)', () => {
    const mix = { name: 'custom', components: [{ kind: 'short-chat' as const, weight: 1 }, { kind: 'long-generation' as const, weight: 3 }] };
    const requests = generateRequests(SAMPLE, { seed: 9, mix, model: 'm' });
    const share = requests.filter((request) => request.kind === 'long-generation').length / SAMPLE;
    expect(Math.abs(share - 0.75)).toBeLessThan(0.02);
  });

  it('mixed is 50% short-chat, 25% long-prompt, 25% long-generation', () => {
    expect(MIXES.mixed.components).toEqual([
      { kind: 'short-chat', weight: 0.5 },
      { kind: 'long-prompt', weight: 0.25 },
      { kind: 'long-generation', weight: 0.25 },
    ]);
  });

  it.each([
    [{ name: 'empty', components: [] }, /no components/],
    [{ name: 'zero', components: [{ kind: 'short-chat' as const, weight: 0 }] }, /no positive weight/],
    [{ name: 'negative', components: [{ kind: 'short-chat' as const, weight: -1 }] }, /weight/],
  ])('refuses mix %j', (mix, message) => {
    expect(() => resolveMix(mix)).toThrow(message);
  });

  describe('every request', () => {
    const requests = [
      ...generateRequests(2000, { seed: 3, mix: 'mixed', model: 'tiny-llm' }),
      ...generateRequests(500, { seed: 3, mix: 'shared-prefix', model: 'tiny-llm' }),
    ];

    it('has a prompt whose ceil(chars/4) count is the intended count, summed or joined', () => {
      for (const request of requests) {
        const contents = messagesOf(request).map((message) => message.content);
        expect(contents.reduce((sum, content) => sum + tokensByCharRule(content), 0)).toBe(request.promptTokens);
        expect(tokensByCharRule(contents.join(''))).toBe(request.promptTokens);
      }
    });

    it.each(Object.entries(REQUEST_SHAPES))('%s: prompt and output lengths stay in their ranges and use them', (kind, shape) => {
      const ofKind = requests.filter((request) => request.kind === kind);
      expect(ofKind.length).toBeGreaterThan(100);
      const prompts = ofKind.map((request) => request.promptTokens);
      const outputs = ofKind.map((request) => request.outputTokens);
      expect(Math.min(...prompts)).toBeGreaterThanOrEqual(shape.promptTokens.min);
      expect(Math.max(...prompts)).toBeLessThanOrEqual(shape.promptTokens.max);
      expect(Math.min(...outputs)).toBeGreaterThanOrEqual(shape.outputTokens.min);
      expect(Math.max(...outputs)).toBeLessThanOrEqual(shape.outputTokens.max);
      // Uniform over the range: the sample mean sits near its middle.
      const middle = (shape.promptTokens.min + shape.promptTokens.max) / 2;
      expect(Math.abs(mean(prompts) - middle) / (shape.promptTokens.max - shape.promptTokens.min)).toBeLessThan(0.1);
    });

    it('streams with usage, asks for exactly its output length and names the model', () => {
      for (const request of requests) {
        const body = request.body as ChatCompletionBody;
        expect(body).toMatchObject({ model: 'tiny-llm', stream: true, stream_options: { include_usage: true }, max_tokens: request.outputTokens });
        expect(request.path).toBe('/v1/chat/completions');
        expect(request.headers['x-request-id']).toBe(request.id);
      }
      expect(new Set(requests.slice(0, 2000).map((request) => request.id)).size).toBe(2000);
    });

    it('single-turn prompts never share a prefix by accident (each starts with its own tag)', () => {
      const starts = requests.filter((request) => request.kind !== 'shared-prefix').map((request) => messagesOf(request)[0].content.slice(0, 10));
      expect(new Set(starts).size).toBe(starts.length);
    });
  });

  describe('many-prefixes', () => {
    it('uses 24 distinct shared prompts that together exceed one h100 replica\'s prefix cache', () => {
      const requests = generateRequests(2000, { seed: 4, mix: 'many-prefixes', model: 'm' });
      const systems = new Map<number, string>();
      for (const request of requests) systems.set(request.prefixIndex as number, messagesOf(request)[0].content);
      expect(systems.size).toBe(MANY_PREFIXES_SHAPE.prefixCount);
      const tokens = [...systems.values()].reduce((sum, text) => sum + tokensByCharRule(text), 0);
      expect(tokens).toBeGreaterThan(PROFILES.h100.prefixCacheTokens);
      for (const request of requests) expect(request.sessionId).toMatch(/^m4-c\d+$/);
    });
  });

  describe('fleet-prefixes', () => {
    it("uses 48 distinct shared prompts: about the four replicas' prefix caches together, several times one", () => {
      const requests = generateRequests(4000, { seed: 4, mix: 'fleet-prefixes', model: 'm' });
      const systems = new Map<number, string>();
      for (const request of requests) systems.set(request.prefixIndex as number, messagesOf(request)[0].content);
      expect(systems.size).toBe(FLEET_PREFIXES_SHAPE.prefixCount);
      const tokens = [...systems.values()].reduce((sum, text) => sum + tokensByCharRule(text), 0);
      const fleet = 2 * PROFILES.h100.prefixCacheTokens + 2 * PROFILES.a100.prefixCacheTokens;
      expect(tokens).toBeGreaterThan(3 * PROFILES.h100.prefixCacheTokens);
      expect(tokens).toBeGreaterThan(0.75 * fleet);
      expect(tokens).toBeLessThan(1.25 * fleet);
      for (const request of requests) expect(request.sessionId).toMatch(/^f4-c\d+$/);
      // Its own streams: the many-prefixes prompts of the same seed are other texts.
      const many = generateRequests(50, { seed: 4, mix: 'many-prefixes', model: 'm' });
      expect(messagesOf(many[0])[0].content).not.toBe(systems.get(many[0].prefixIndex as number));
    });
  });

  describe('hot-prefix', () => {
    const requests = generateRequests(3000, { seed: 8, mix: 'hot-prefix', model: 'm' });

    it('opens about half of the conversations on prefix 0, the rest on the others', () => {
      const byConversation = new Map<string, number>();
      for (const request of requests) byConversation.set(request.sessionId as string, request.prefixIndex as number);
      const prefixes = [...byConversation.values()];
      const hot = prefixes.filter((index) => index === 0).length / prefixes.length;
      // ~500 conversations: a share of 0.5 has a standard error of ~0.022; 0.1 is over 4 of them.
      expect(Math.abs(hot - SHARED_PREFIX_SHAPE.hotShare)).toBeLessThan(0.1);
      for (let k = 1; k < SHARED_PREFIX_SHAPE.prefixCount; k++) expect(prefixes).toContain(k);
    });

    it('uses the same system prompts as shared-prefix, and conversation ids of its own', () => {
      const shared = generateRequests(200, { seed: 8, mix: 'shared-prefix', model: 'm' });
      const systemOf = (request: (typeof requests)[number]) => messagesOf(request)[0].content;
      const sharedPrefix0 = shared.find((request) => request.prefixIndex === 0);
      expect(sharedPrefix0).toBeDefined();
      expect(requests.filter((request) => request.prefixIndex === 0).every((request) => systemOf(request) === systemOf(sharedPrefix0!))).toBe(true);
      for (const request of requests) expect(request.sessionId).toMatch(/^h8-c\d+$/);
    });
  });

  describe('shared-prefix', () => {
    const requests = generateRequests(600, { seed: 21, mix: 'shared-prefix', model: 'm' });

    it('every request opens with one of K identical long system prompts', () => {
      const byPrefix = new Map<number, Set<string>>();
      for (const request of requests) {
        const system = messagesOf(request)[0];
        expect(system.role).toBe('system');
        const seen = byPrefix.get(request.prefixIndex as number) ?? new Set<string>();
        seen.add(system.content);
        byPrefix.set(request.prefixIndex as number, seen);
      }
      expect([...byPrefix.keys()].sort()).toEqual([0, 1, 2, 3].slice(0, SHARED_PREFIX_SHAPE.prefixCount));
      const prefixes = [...byPrefix.values()].map((set) => {
        expect(set.size).toBe(1); // the same string for every request of that prefix
        return [...set][0];
      });
      for (const prefix of prefixes) expect(tokensByCharRule(prefix)).toBeGreaterThanOrEqual(SHARED_PREFIX_SHAPE.prefixTokens.min);
      expect(new Set(prefixes).size).toBe(prefixes.length);
    });

    it('keeps the conversation id in x-session-id and the user field', () => {
      for (const request of requests) {
        expect(request.sessionId).toMatch(/^s21-c\d+$/);
        expect(request.headers['x-session-id']).toBe(request.sessionId);
        expect((request.body as ChatCompletionBody).user).toBe(request.sessionId);
      }
    });

    it('each turn re-sends the previous turn and its reply: the conversation grows as a prefix', () => {
      const bySession = new Map<string, LoadRequest[]>();
      for (const request of requests) bySession.set(request.sessionId as string, [...(bySession.get(request.sessionId as string) ?? []), request]);
      let multiTurn = 0;
      for (const turns of bySession.values()) {
        expect(turns.length).toBeLessThanOrEqual(SHARED_PREFIX_SHAPE.turnsPerConversation);
        expect(new Set(turns.map((turn) => turn.prefixIndex)).size).toBe(1);
        for (let i = 1; i < turns.length; i++) {
          const before = messagesOf(turns[i - 1]);
          const after = messagesOf(turns[i]);
          expect(after.length).toBe(before.length + 2);
          expect(after.slice(0, before.length)).toEqual(before);
          expect(after[before.length]).toMatchObject({ role: 'assistant' });
          expect(tokensByCharRule(after[before.length].content)).toBe(turns[i - 1].outputTokens);
          multiTurn++;
        }
      }
      expect(multiTurn).toBeGreaterThan(100);
    });

    it('the completions API gets the same text as one prompt string', () => {
      const chat = generateRequests(50, { seed: 21, mix: 'shared-prefix', model: 'm' });
      const completions = generateRequests(50, { seed: 21, mix: 'shared-prefix', model: 'm', api: 'completions' });
      for (let i = 0; i < chat.length; i++) {
        expect(completions[i].path).toBe('/v1/completions');
        const body = completions[i].body as CompletionBody;
        expect(body.prompt).toBe(messagesOf(chat[i]).map((message) => message.content).join(''));
        expect(tokensByCharRule(body.prompt)).toBe(completions[i].promptTokens);
        expect(body).toMatchObject({ stream: true, stream_options: { include_usage: true }, max_tokens: chat[i].outputTokens, user: chat[i].sessionId });
      }
    });
  });
});
