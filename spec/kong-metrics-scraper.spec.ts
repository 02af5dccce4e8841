// The Kong plugin's background /metrics scraper against local HTTP servers standing in for
// replicas: each round hands every 200 text to the balancer, skips refused, timed-out and non-200
// scrapes, follows the replica list at each round, logs one line when a replica starts failing
// and one when it recovers, never runs two rounds at once (a hanging replica holds its round only
// until the timeout), and stops. The module takes no clock: rounds are driven with scrapeNow()
// under an interval that never fires inside a test, and where the timer itself is under test
// another scraper's progress is the clock, never a fixed sleep.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startMetricsScraper, stopAllMetricsScrapers } from '../plugins/kong/metrics-scraper';
import type { MetricsScraperOptions } from '../plugins/kong/metrics-scraper';
import type { Replica } from '../shared/types';

const VLLM = 'vllm:num_requests_running{model_name="m"} 3\nvllm:num_requests_waiting{model_name="m"} 1\nvllm:kv_cache_usage_perc{model_name="m"} 0.5\n';
/** The timer never fires inside a test at this interval: rounds are driven with scrapeNow(). */
const QUIET_MS = 60_000;

interface FakeReplica {
  replica: Replica;
  /** Paths requested, in order. */
  paths: string[];
  /** ok: 200 with `text`; 404; hang: never answers (until close). */
  mode: 'ok' | '404' | 'hang';
  text: string;
  close(): Promise<void>;
}

const opened: FakeReplica[] = [];

async function fakeReplica(id: string, text = VLLM): Promise<FakeReplica> {
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    fake.paths.push(req.url ?? '');
    if (fake.mode === 'hang') return;
    res.writeHead(fake.mode === 'ok' ? 200 : 404, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(fake.mode === 'ok' ? fake.text : 'not found');
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const fake: FakeReplica = {
    replica: { id, address: '127.0.0.1:' + port, weight: 1 },
    paths: [],
    mode: 'ok',
    text,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  opened.push(fake);
  return fake;
}

/** An address nothing listens on (a port just closed): connections are refused. */
async function refusedReplica(id: string): Promise<Replica> {
  const fake = await fakeReplica(id);
  await fake.close();
  return fake.replica;
}

interface Recorded {
  fed: Array<[string, string]>;
  lines: string[];
}

function options(replicas: Replica[] | (() => Replica[]), recorded: Recorded, extra: Partial<MetricsScraperOptions> = {}): MetricsScraperOptions {
  return {
    path: '/metrics',
    intervalMs: QUIET_MS,
    timeoutMs: 2000,
    replicas: typeof replicas === 'function' ? replicas : () => replicas,
    // As Balancer.onReplicaMetrics: true when the text holds a load.
    record: (id, text) => {
      recorded.fed.push([id, text]);
      return text.indexOf('vllm:') >= 0;
    },
    ...extra,
  };
}

function recorder(): Recorded & { log: (line: string) => void } {
  const r: Recorded = { fed: [], lines: [] };
  return { ...r, log: (line: string) => r.lines.push(line) };
}

afterEach(async () => {
  stopAllMetricsScrapers();
  vi.restoreAllMocks();
  for (const fake of opened.splice(0)) await fake.close();
});

describe('rounds', () => {
  it('scrape every replica at once at start, and feed each 200 text under its replica id', async () => {
    const a = await fakeReplica('r-a', VLLM);
    const b = await fakeReplica('r-b', VLLM.replace(' 3\n', ' 7\n'));
    const r = recorder();
    const scraper = startMetricsScraper(options([a.replica, b.replica], r), r.log);
    // No scrapeNow(): the round started by startMetricsScraper itself lands.
    await vi.waitFor(() => expect(r.fed).toHaveLength(2), { timeout: 5000, interval: 5 });
    expect(new Map(r.fed)).toEqual(new Map([['r-a', a.text], ['r-b', b.text]]));
    expect(a.paths).toEqual(['/metrics']);
    await scraper.scrapeNow();
    expect(r.fed).toHaveLength(4);
    expect(b.paths).toEqual(['/metrics', '/metrics']);
    expect(r.lines).toEqual([]);
  });

  it('scrape replica_metrics.path, with the leading slash added when it is missing', async () => {
    const a = await fakeReplica('r-a');
    const r = recorder();
    await startMetricsScraper(options([a.replica], r, { path: 'stats/prometheus' }), r.log).scrapeNow();
    expect(a.paths).toEqual(['/stats/prometheus']);
  });

  it.each([
    ['404', 'HTTP 404'],
    ['refused', 'connection refused'],
    ['hang', 'timed out after 150 ms'],
  ] as const)('skip a %s scrape: nothing is fed, the others still are', async (kind, why) => {
    const good = await fakeReplica('good');
    let bad: Replica;
    if (kind === 'refused') {
      bad = await refusedReplica('bad');
    } else {
      const fake = await fakeReplica('bad');
      fake.mode = kind;
      bad = fake.replica;
    }
    const r = recorder();
    await startMetricsScraper(options([good.replica, bad], r, { timeoutMs: 150 }), r.log).scrapeNow();
    expect(r.fed.map((f) => f[0])).toEqual(['good']);
    expect(r.lines).toEqual([
      'llm-balancer: scraping http://' + bad.address + '/metrics failed (its last load counts until replica_metrics.stale_after_s, then its in-flight requests do): ' + why,
    ]);
  });

  it('follow the replica list at each round: added replicas are scraped, removed ones no more', async () => {
    const a = await fakeReplica('r-a');
    const b = await fakeReplica('r-b');
    let list = [a.replica];
    const r = recorder();
    const scraper = startMetricsScraper(options(() => list, r), r.log);
    await scraper.scrapeNow();
    list = [b.replica];
    await scraper.scrapeNow();
    expect(r.fed.map((f) => f[0])).toEqual(['r-a', 'r-b']);
    expect(a.paths).toHaveLength(1);
    expect(b.paths).toHaveLength(1);
  });
});

describe('logging', () => {
  it('one line when a replica starts failing, none while it keeps failing, one when it recovers', async () => {
    const a = await fakeReplica('r-a');
    const other = await fakeReplica('r-other');
    const r = recorder();
    const scraper = startMetricsScraper(options([a.replica, other.replica], r), r.log);
    await scraper.scrapeNow();
    expect(r.lines).toEqual([]);

    a.mode = '404';
    for (let i = 0; i < 3; i++) await scraper.scrapeNow();
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/^llm-balancer: scraping http:\/\/127\.0\.0\.1:\d+\/metrics failed .*: HTTP 404$/);
    expect(r.lines[0]).toContain(a.replica.address);

    a.mode = 'ok';
    await scraper.scrapeNow();
    await scraper.scrapeNow();
    expect(r.lines).toHaveLength(2);
    expect(r.lines[1]).toBe('llm-balancer: scraping http://' + a.replica.address + '/metrics recovered after 3 failed scrapes');

    // A new streak is a new line.
    a.mode = '404';
    await scraper.scrapeNow();
    expect(r.lines).toHaveLength(3);
    expect(r.lines[2]).toMatch(/failed .*: HTTP 404$/);
  });

  it('a 200 without vLLM or SGLang load is a failure (a wrong path would else go unnoticed); the text is still handed over', async () => {
    const a = await fakeReplica('r-a', 'process_cpu_seconds_total 12\n');
    const r = recorder();
    await startMetricsScraper(options([a.replica], r), r.log).scrapeNow();
    expect(r.fed).toEqual([['r-a', 'process_cpu_seconds_total 12\n']]);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/failed .*: no vLLM or SGLang load metrics in the answer$/);
  });

  it('a replica removed while failing takes its streak with it: back and failing, it is logged again', async () => {
    const a = await fakeReplica('r-a');
    a.mode = '404';
    let list = [a.replica];
    const r = recorder();
    const scraper = startMetricsScraper(options(() => list, r), r.log);
    await scraper.scrapeNow();
    list = [];
    await scraper.scrapeNow();
    list = [a.replica];
    await scraper.scrapeNow();
    expect(r.lines).toHaveLength(2);
    expect(r.lines.every((line) => line.endsWith('HTTP 404'))).toBe(true);
  });

  it("logs to console.warn by default (the plugin server sends stderr to Kong's error log)", async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const r = recorder();
    await startMetricsScraper(options([await refusedReplica('gone')], r)).scrapeNow();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/^llm-balancer: scraping http:.* failed .*: connection refused$/);
  });
});

describe('timing', () => {
  it('never overlaps rounds: a hanging replica holds its round until the timeout, and the timer starts no other', async () => {
    const hung = await fakeReplica('hung');
    hung.mode = 'hang';
    const quick = await fakeReplica('quick');
    const r = recorder();
    // The 20 ms timer fires about ten times during the 200 ms the hung scrape waits.
    const scraper = startMetricsScraper(options([hung.replica, quick.replica], r, { intervalMs: 20, timeoutMs: 200 }), r.log);
    await scraper.scrapeNow();
    expect(quick.paths).toHaveLength(1);
    expect(hung.paths).toHaveLength(1);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/timed out after 200 ms$/);
    // The timer does start the next round once the first is over.
    await vi.waitFor(() => expect(hung.paths).toHaveLength(2), { timeout: 5000, interval: 5 });
    expect(quick.paths).toHaveLength(2);
  });

  it('stop() stops the timer: another scraper on the same interval keeps scraping, the stopped one not', async () => {
    const stoppedOne = await fakeReplica('stopped');
    const clock = await fakeReplica('clock');
    const r = recorder();
    const scraper = startMetricsScraper(options([stoppedOne.replica], r, { intervalMs: 20 }), r.log);
    startMetricsScraper(options([clock.replica], recorder(), { intervalMs: 20 }));
    await vi.waitFor(() => expect(stoppedOne.paths.length).toBeGreaterThanOrEqual(2), { timeout: 5000, interval: 5 });
    // Stop right after a round ends (no timer tick runs between the two): no scrape is in flight.
    await scraper.scrapeNow();
    scraper.stop();
    const seen = stoppedOne.paths.length;
    const fed = r.fed.length;
    const clockAt = clock.paths.length;
    await vi.waitFor(() => expect(clock.paths.length).toBeGreaterThanOrEqual(clockAt + 5), { timeout: 5000, interval: 5 });
    expect(stoppedOne.paths).toHaveLength(seen);
    // scrapeNow() after stop() scrapes nothing either.
    await scraper.scrapeNow();
    expect(stoppedOne.paths).toHaveLength(seen);
    expect(r.fed).toHaveLength(fed);
  });

  it('a scrape in flight when the scraper stops feeds nothing and logs nothing', async () => {
    const slow = await fakeReplica('slow');
    slow.mode = 'hang';
    const r = recorder();
    const scraper = startMetricsScraper(options([slow.replica], r, { timeoutMs: 100 }), r.log);
    const inFlight = scraper.scrapeNow();
    await vi.waitFor(() => expect(slow.paths).toHaveLength(1), { timeout: 5000, interval: 5 });
    scraper.stop();
    await inFlight;
    expect(r.fed).toEqual([]);
    expect(r.lines).toEqual([]);
  });

  it('stopAllMetricsScrapers stops every scraper', async () => {
    const a = await fakeReplica('r-a');
    const r = recorder();
    const scrapers = [startMetricsScraper(options([a.replica], r), r.log), startMetricsScraper(options([a.replica], r), r.log)];
    await Promise.all(scrapers.map((s) => s.scrapeNow()));
    const seen = a.paths.length;
    stopAllMetricsScrapers();
    await Promise.all(scrapers.map((s) => s.scrapeNow()));
    expect(a.paths).toHaveLength(seen);
  });
});
