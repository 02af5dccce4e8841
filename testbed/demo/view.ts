// The live terminal view of `npm start`: one row per replica with what the gateway knows (the njs
// module's status page: state, in-flight, picks, failures, latency and time-to-first-byte
// estimates; TTFB is the response header, which vLLM sends at once for a stream) next to
// what the replica itself reports (the emulator's true running/waiting/KV usage), and a traffic
// line. Pure: the demo hands in snapshots and prints the string, specs check the text.

/** One replica row of GET /llm-balancer/status (plugins/nginx/status.ts). */
export interface GatewayRow {
  id: string;
  address: string;
  weight: number;
  state: string;
  in_flight: number;
  latency_ewma_ms: number | null;
  ttft_ewma_ms: number | null;
  picks: number;
  failures: number;
}

/** What the emulated replica reports about itself (its own truth, not the gateway's estimate). */
export interface ReplicaTruth {
  profile: string;
  running: number;
  waiting: number;
  /** KV cache usage, 0..1. */
  kvUsage: number;
}

export interface TrafficLine {
  /** Open-loop target rate, requests per second (0: no demo traffic). */
  ratePerS: number;
  mix: string;
  sent: number;
  completed: number;
  errors: number;
  p50Ms: number | null;
  p99Ms: number | null;
}

export interface ViewInput {
  title: string;
  gatewayUrl: string;
  strategy: string;
  rows: GatewayRow[];
  /** By gateway row address (host:port); absent when the replica is not emulated here. */
  truth: Record<string, ReplicaTruth | undefined>;
  /** Picks per replica id at the previous refresh, to show each replica's share of recent traffic. */
  previousPicks: Record<string, number>;
  traffic: TrafficLine;
  /** Seconds since the demo started. */
  uptimeS: number;
}

function ms(value: number | null): string {
  if (value === null) return '-';
  return value >= 10_000 ? (value / 1000).toFixed(1) + ' s' : Math.round(value) + ' ms';
}

function percent(fraction: number): string {
  return Math.round(fraction * 100) + '%';
}

/** Left-aligned columns, two spaces apart. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/**
 * The share column is computed from the picks since the previous refresh (what the strategy is
 * doing now), not since the start: a replica ejected a minute ago should show 0% now.
 */
export function renderView(input: ViewInput): string {
  const recent = input.rows.map((row) => Math.max(0, row.picks - (input.previousPicks[row.id] ?? 0)));
  const recentTotal = recent.reduce((a, b) => a + b, 0);
  const rows = input.rows.map((row, i) => {
    const truth = input.truth[row.address];
    return [
      row.id,
      truth ? truth.profile : '-',
      String(row.weight),
      row.state,
      String(row.in_flight),
      recentTotal > 0 ? percent(recent[i] / recentTotal) : '-',
      String(row.picks),
      String(row.failures),
      ms(row.latency_ewma_ms),
      ms(row.ttft_ewma_ms),
      truth ? String(truth.running) : '-',
      truth ? String(truth.waiting) : '-',
      truth ? percent(truth.kvUsage) : '-',
    ];
  });
  const t = input.traffic;
  const trafficText =
    t.ratePerS > 0
      ? `demo traffic: ${t.ratePerS} req/s open loop (${t.mix}): ${t.sent} sent, ${t.completed} completed, ${t.errors} errors, latency p50 ${ms(t.p50Ms)} p99 ${ms(t.p99Ms)}`
      : 'demo traffic: off (--no-traffic): send your own requests';
  return [
    input.title,
    `strategy ${input.strategy}   up ${Math.floor(input.uptimeS)} s`,
    `gateway  ${input.gatewayUrl}/v1/chat/completions   status ${input.gatewayUrl}/llm-balancer/status`,
    '',
    ...table(
      ['replica', 'profile', 'weight', 'state', 'in-flight', 'share', 'picks', 'failures', 'latency', 'TTFB', 'running', 'waiting', 'KV'],
      rows,
    ),
    '',
    trafficText,
    'Ctrl-C stops nginx, the replicas and the traffic.',
  ].join('\n');
}
