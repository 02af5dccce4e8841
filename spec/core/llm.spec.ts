import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../shared/balancer';
import { createMemoryStore } from '../../shared/memory-store';
import { minMaxScores, unsaturated } from '../../shared/strategies/llm';
import type { Replica } from '../../shared/types';
import { configOf, fakeClock, replicas, seededRandom, view } from '../helpers/core';

/** vLLM-style /metrics text. */
function metrics(running: number, waiting: number, kv: number): string {
  const labels = '{engine="0",model_name="m"}';
  return [
    '# HELP vllm:num_requests_running Number of requests in model execution batches.',
    '# TYPE vllm:num_requests_running gauge',
    `vllm:num_requests_running${labels} ${running}`,
    `vllm:num_requests_waiting${labels} ${waiting}`,
    `vllm:kv_cache_usage_perc${labels} ${kv}`,
    '',
  ].join('\n');
}

const chat = (system: string, question: string) => ({ model: 'm', messages: [{ role: 'system', content: system }, { role: 'user', content: question }] });

function setup(extra: Record<string, unknown> = {}) {
  const store = createMemoryStore();
  const clock = fakeClock();
  const balancer = createBalancer(configOf({ strategy: 'llm', ...extra }), { store, clock, random: seededRandom(4) });
  return { store, clock, balancer };
}

function pickId(b: ReturnType<typeof createBalancer>, fleet: Replica[], body: unknown, start = false): string {
  const result = b.pick(fleet, { body });
  if (!result.ok) throw new Error(result.message);
  if (start) b.onStart(result.replicas[0], result.tokens);
  return result.replicas[0].id;
}

describe('llm scorers and filters', () => {
  it('scores loads min-max: the lightest 1, the heaviest 0, all equal 1', () => {
    expect(minMaxScores([0, 5, 10])).toEqual([1, 0.5, 0]);
    expect(minMaxScores([3, 3])).toEqual([1, 1]);
  });

  it('skips saturated replicas while another is not, and keeps all when every one is', () => {
    const calm = view('calm', { kvUsage: 0.5, queue: 2 });
    const fullKv = view('kv', { kvUsage: 0.97, queue: 1 });
    const longQueue = view('q', { kvUsage: 0.1, queue: 40 });
    expect(unsaturated([calm, fullKv, longQueue], 0.95, 32).map((v) => v.id)).toEqual(['calm']);
    expect(unsaturated([fullKv, longQueue], 0.95, 32).map((v) => v.id)).toEqual(['kv', 'q']);
    // Unknown metrics never count as saturated.
    expect(unsaturated([view('unknown')], 0.95, 32).map((v) => v.id)).toEqual(['unknown']);
  });
});

describe('llm', () => {
  it("follows the replicas' own queues: load another gateway put there counts, though this one sent nothing", () => {
    const { balancer } = setup();
    const fleet = replicas([1, 1, 1]);
    balancer.onReplicaMetrics(fleet[0], metrics(20, 8, 0.7));
    balancer.onReplicaMetrics(fleet[1], metrics(2, 0, 0.1));
    balancer.onReplicaMetrics(fleet[2], metrics(12, 0, 0.5));
    for (let i = 0; i < 5; i++) expect(pickId(balancer, fleet, chat('s', `q${i}`))).toBe('r1');
    const status = balancer.status(fleet);
    expect(status.map((row) => [row.queue, row.kvUsage])).toEqual([
      [28, 0.7],
      [2, 0.1],
      [12, 0.5],
    ]);
  });

  it('adds its own requests since the last scrape: no herd onto the replica that looked lightest', () => {
    const { balancer } = setup({ llm: { kv_weight: 0, tokens_weight: 0, prefix_weight: 0 } });
    const fleet = replicas([1, 1]);
    balancer.onReplicaMetrics(fleet[0], metrics(4, 0, 0.3));
    balancer.onReplicaMetrics(fleet[1], metrics(6, 0, 0.3));
    const counts: Record<string, number> = {};
    for (let i = 0; i < 10; i++) {
      const id = pickId(balancer, fleet, chat('s', `q${i}`), true);
      counts[id] = (counts[id] ?? 0) + 1;
    }
    // Queues 4 + 6 + 10 new = 20: 10 each, i.e. r0 takes 6 and r1 4 (not all 10 on r0).
    expect(counts).toEqual({ r0: 6, r1: 4 });
    expect(balancer.status(fleet).map((row) => row.queue)).toEqual([10, 10]);
    // The next scrape reports what the replicas now hold; the delta starts over from there.
    balancer.onReplicaMetrics(fleet[0], metrics(10, 0, 0.3));
    balancer.onReplicaMetrics(fleet[1], metrics(10, 0, 0.3));
    expect(balancer.status(fleet).map((row) => row.queue)).toEqual([10, 10]);
  });

  it('ignores metrics older than stale_after_s and counts its own in-flight requests instead', () => {
    const { balancer, clock } = setup({ replica_metrics: { stale_after_s: 5 } });
    const fleet = replicas([1, 1]);
    balancer.onReplicaMetrics(fleet[0], metrics(0, 0, 0));
    balancer.onReplicaMetrics(fleet[1], metrics(30, 10, 0.9));
    expect(pickId(balancer, fleet, chat('s', 'a'))).toBe('r0');
    clock.advance(6000);
    expect(balancer.status(fleet).map((row) => row.queue)).toEqual([null, null]);
    // Stale: r0 now holds 2 of this gateway's requests, r1 none.
    pickId(balancer, fleet, chat('x', 'b'), true);
    pickId(balancer, fleet, chat('y', 'c'), true);
    const placed = balancer.status(fleet).map((row) => row.inFlight);
    expect(placed.sort()).toEqual([1, 1]);
  });

  it("keeps the replicas' own prefix-cache counters beside their load for the status rows: null where not reported, removed when a scrape lacks them, stale with the load", () => {
    const { balancer, clock } = setup({ replica_metrics: { stale_after_s: 5 } });
    const fleet = replicas([1, 1, 1]);
    const counters = (queries: number, hits: number) => `vllm:prefix_cache_queries_total{engine="0",model_name="m"} ${queries}.0\nvllm:prefix_cache_hits_total{engine="0",model_name="m"} ${hits}.0\n`;
    const prefix = () => balancer.status(fleet).map((row) => [row.prefixQueries, row.prefixHits]);
    balancer.onReplicaMetrics(fleet[0], metrics(2, 0, 0.1) + counters(4096, 3072));
    // llama.cpp: looked up = computed + cached prompt tokens.
    balancer.onReplicaMetrics(fleet[1], 'llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\nllamacpp:prompt_tokens_total 300\nllamacpp:prompt_tokens_cached_total 700\n');
    // SGLang reports no such counters.
    balancer.onReplicaMetrics(fleet[2], 'sglang:num_running_reqs 1\nsglang:num_queue_reqs 0\nsglang:token_usage 0.2\n');
    expect(prefix()).toEqual([
      [4096, 3072],
      [1000, 700],
      [null, null],
    ]);
    // A text with counters but no load is not a scrape: the last values stay (until stale).
    expect(balancer.onReplicaMetrics(fleet[0], counters(9999, 9999))).toBe(false);
    // A later scrape without them removes them; one with only the queries keeps just that.
    balancer.onReplicaMetrics(fleet[0], metrics(2, 0, 0.1));
    balancer.onReplicaMetrics(fleet[1], 'llamacpp:requests_processing 1\nllamacpp:prompt_tokens_total 300\n');
    balancer.onReplicaMetrics(fleet[2], metrics(1, 0, 0.2) + 'vllm:prefix_cache_queries_total 50\n');
    expect(prefix()).toEqual([
      [null, null],
      [null, null],
      [50, null],
    ]);
    balancer.onReplicaMetrics(fleet[0], metrics(2, 0, 0.1) + counters(5000, 4000));
    clock.advance(4000);
    expect(prefix()[0]).toEqual([5000, 4000]);
    // Stale with the load: a replica that stopped answering does not keep its last counters.
    clock.advance(2000);
    expect(balancer.status(fleet).map((row) => [row.queue, row.kvUsage, row.prefixQueries, row.prefixHits])).toEqual([
      [null, null, null, null],
      [null, null, null, null],
      [null, null, null, null],
    ]);
  });

  it('a text without the metrics records nothing and keeps the last good values until they go stale', () => {
    const { balancer } = setup();
    const fleet = replicas([1]);
    expect(balancer.onReplicaMetrics(fleet[0], metrics(3, 1, 0.25))).toBe(true);
    expect(balancer.onReplicaMetrics(fleet[0], 'not metrics at all')).toBe(false);
    expect(balancer.status(fleet)[0].queue).toBe(4);
  });

  it('keeps a conversation on the replica that holds its prefix while loads are even', () => {
    const { balancer } = setup();
    const fleet = replicas([1, 1, 1, 1]);
    const system = 'You are a careful assistant. '.repeat(80);
    const home = pickId(balancer, fleet, chat(system, 'first question'));
    for (let i = 0; i < 10; i++) expect(pickId(balancer, fleet, chat(system, `question ${i}`))).toBe(home);
  });

  it('moves a hot prefix off its replica once that replica is loaded (queue, KV, tokens outweigh the prefix)', () => {
    const { balancer } = setup();
    const fleet = replicas([1, 1]);
    const system = 'Shared tool definitions. '.repeat(100);
    const home = pickId(balancer, fleet, chat(system, 'q'));
    const homeIndex = fleet.findIndex((r) => r.id === home);
    balancer.onReplicaMetrics(fleet[homeIndex], metrics(24, 6, 0.85));
    balancer.onReplicaMetrics(fleet[1 - homeIndex], metrics(1, 0, 0.1));
    expect(pickId(balancer, fleet, chat(system, 'q2'))).not.toBe(home);
  });

  it('never leaves the saturated replica as the only choice missing: it stays an alternate', () => {
    const { balancer } = setup({ retries: 1 });
    const fleet = replicas([1, 1]);
    balancer.onReplicaMetrics(fleet[0], metrics(10, 50, 0.99));
    balancer.onReplicaMetrics(fleet[1], metrics(1, 0, 0.2));
    const result = balancer.pick(fleet, { body: chat('s', 'q') });
    expect(result.ok && result.replicas.map((r) => r.id)).toEqual(['r1', 'r0']);
  });
});
