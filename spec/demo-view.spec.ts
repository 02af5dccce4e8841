// npm start's live view (testbed/demo/view.ts): what it shows per replica and for the traffic.
import { describe, expect, it } from 'vitest';
import { renderView } from '../testbed/demo/view';
import type { ViewInput } from '../testbed/demo/view';

function input(overrides: Partial<ViewInput> = {}): ViewInput {
  return {
    title: 'llm-balancer demo',
    gatewayUrl: 'http://127.0.0.1:8080',
    strategy: 'least-connections',
    rows: [
      { id: 'h100-a', address: '127.0.0.1:8001', weight: 1, state: 'healthy', in_flight: 3, latency_ewma_ms: 812.4, ttft_ewma_ms: 95, picks: 130, failures: 0 },
      { id: 'a100-a', address: '127.0.0.1:8002', weight: 0.8, state: 'ejected', in_flight: 0, latency_ewma_ms: null, ttft_ewma_ms: null, picks: 70, failures: 5 },
    ],
    truth: { '127.0.0.1:8001': { profile: 'h100', running: 3, waiting: 1, kvUsage: 0.125 } },
    previousPicks: { 'h100-a': 100, 'a100-a': 70 },
    traffic: { ratePerS: 2, mix: 'mixed', sent: 200, completed: 195, errors: 5, p50Ms: 1234, p99Ms: 15_500 },
    uptimeS: 42.7,
    ...overrides,
  };
}

function rowOf(text: string, id: string): string[] {
  const line = text.split('\n').find((l) => l.startsWith(id + ' '));
  if (!line) throw new Error(`no row for ${id} in\n${text}`);
  return line.trim().split(/\s{2,}/);
}

describe('renderView', () => {
  it('shows the gateway view and the replica truth side by side', () => {
    const text = renderView(input());
    expect(rowOf(text, 'h100-a')).toEqual(['h100-a', 'h100', '1', 'healthy', '3', '100%', '130', '0', '812 ms', '95 ms', '3', '1', '13%']);
    expect(rowOf(text, 'a100-a')).toEqual(['a100-a', '-', '0.8', 'ejected', '0', '0%', '70', '5', '-', '-', '-', '-', '-']);
  });

  it('computes the share from picks since the previous refresh, not since the start', () => {
    const text = renderView(input({ previousPicks: { 'h100-a': 120, 'a100-a': 60 } }));
    expect(rowOf(text, 'h100-a')[5]).toBe('50%');
    expect(rowOf(text, 'a100-a')[5]).toBe('50%');
    expect(rowOf(renderView(input({ previousPicks: { 'h100-a': 130, 'a100-a': 70 } })), 'h100-a')[5]).toBe('-');
  });

  it('prints the gateway URL, the strategy and the traffic line', () => {
    const text = renderView(input());
    expect(text).toContain('http://127.0.0.1:8080/v1/chat/completions');
    expect(text).toContain('strategy least-connections   up 42 s');
    expect(text).toContain('2 req/s open loop (mixed): 200 sent, 195 completed, 5 errors, latency p50 1234 ms p99 15.5 s');
  });

  it('says when there is no demo traffic', () => {
    expect(renderView(input({ traffic: { ratePerS: 0, mix: 'mixed', sent: 0, completed: 0, errors: 0, p50Ms: null, p99Ms: null } }))).toContain('demo traffic: off');
  });
});
