// Command line of the load generator:
//   node --import tsx testbed/loadgen/cli.ts --url http://127.0.0.1:8080 --rate 5 --duration 30 --mix mixed --seed 1
// Builds the trace for the seed, replays it open loop against --url, prints the report table
// (or its JSON with --json) and, with --out, writes the JSON report to a file.

import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ARRIVAL_MODES, type ArrivalMode } from './arrivals';
import { DEFAULT_MAX_SOCKETS } from './client';
import { API_PATHS, MIXES, type Api } from './mixes';
import { formatReport, type Slo } from './report';
import { buildTrace, DEFAULT_MODEL, runTrace, type BuildTraceOptions, type RunOptions } from './run';

export const USAGE = `usage: node --import tsx testbed/loadgen/cli.ts [options]
  --url URL            target, http://host:port[/prefix]       (default http://127.0.0.1:8080)
  --rate N             requests per second                     (default 5)
  --duration S         seconds of arrivals                     (default 30)
  --mix NAME           ${Object.keys(MIXES).join(' | ')}  (default mixed)
  --seed N             trace seed: same seed, same trace       (default 1)
  --arrivals MODE      ${ARRIVAL_MODES.join(' | ')}                       (default poisson)
  --model NAME         model field of every request            (default ${DEFAULT_MODEL};
                       multi-lora names adapters, multi-model model-a/model-b instead)
  --api API            ${Object.keys(API_PATHS).join(' | ')}                      (default chat)
  --path PATH          send every request to PATH instead of the API's endpoint
  --timeout-ms N       per-request deadline                    (default 120000)
  --max-sockets N      keep-alive pool size                    (default ${DEFAULT_MAX_SOCKETS})
  --slo-ttft-ms N, --slo-tpot-ms N, --slo-e2e-ms N   goodput bounds (any subset)
  --header 'NAME: VALUE'  extra header on every request (repeatable)
  --json               print the report as JSON instead of the table
  --out FILE           also write the JSON report to FILE`;

/** Long enough for a 1000-token generation on a slow replica; a deadline, not an expectation. */
const DEFAULT_TIMEOUT_MS = 120_000;

export interface CliConfig {
  trace: BuildTraceOptions;
  run: RunOptions;
  json: boolean;
  out: string | null;
}

/** Parses argv (without node and the script); throws an Error whose message is for the user. */
export function parseCliArgs(argv: string[]): CliConfig {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8080' },
      rate: { type: 'string', default: '5' },
      duration: { type: 'string', default: '30' },
      mix: { type: 'string', default: 'mixed' },
      seed: { type: 'string', default: '1' },
      arrivals: { type: 'string', default: 'poisson' },
      model: { type: 'string', default: DEFAULT_MODEL },
      api: { type: 'string', default: 'chat' },
      path: { type: 'string' },
      'timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUT_MS) },
      'max-sockets': { type: 'string', default: String(DEFAULT_MAX_SOCKETS) },
      'slo-ttft-ms': { type: 'string' },
      'slo-tpot-ms': { type: 'string' },
      'slo-e2e-ms': { type: 'string' },
      header: { type: 'string', multiple: true, default: [] },
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
    },
  });
  if (!ARRIVAL_MODES.includes(values.arrivals as ArrivalMode)) throw new Error(`--arrivals must be one of ${ARRIVAL_MODES.join(', ')}`);
  if (!Object.prototype.hasOwnProperty.call(API_PATHS, values.api)) throw new Error(`--api must be one of ${Object.keys(API_PATHS).join(', ')}`);
  if (!Object.prototype.hasOwnProperty.call(MIXES, values.mix)) throw new Error(`--mix must be one of ${Object.keys(MIXES).join(', ')}`);

  const slo: Slo = {};
  if (values['slo-ttft-ms'] !== undefined) slo.ttftMs = positive('--slo-ttft-ms', values['slo-ttft-ms']);
  if (values['slo-tpot-ms'] !== undefined) slo.tpotMs = positive('--slo-tpot-ms', values['slo-tpot-ms']);
  if (values['slo-e2e-ms'] !== undefined) slo.e2eMs = positive('--slo-e2e-ms', values['slo-e2e-ms']);
  const headers: Record<string, string> = {};
  for (const header of values.header) {
    const colon = header.indexOf(':');
    if (colon <= 0) throw new Error(`--header must look like 'name: value', got '${header}'`);
    headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
  }
  const seed = Number(values.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got '${values.seed}'`);
  const maxSockets = positive('--max-sockets', values['max-sockets']);
  if (!Number.isInteger(maxSockets)) throw new Error(`--max-sockets must be an integer, got '${values['max-sockets']}'`);

  return {
    trace: {
      seed,
      ratePerS: positive('--rate', values.rate),
      durationS: positive('--duration', values.duration),
      mix: values.mix,
      arrivals: values.arrivals as ArrivalMode,
      model: values.model,
      api: values.api as Api,
    },
    run: {
      baseUrl: values.url,
      path: values.path,
      timeoutMs: positive('--timeout-ms', values['timeout-ms']),
      maxSockets,
      slo: Object.keys(slo).length > 0 ? slo : undefined,
      headers,
    },
    json: values.json,
    out: values.out ?? null,
  };
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) throw new Error(`${flag} must be a positive number, got '${text}'`);
  return value;
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  let config: CliConfig;
  try {
    config = parseCliArgs(argv);
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const trace = buildTrace(config.trace);
  console.error(
    `sending ${trace.entries.length} requests (${trace.mix}, ${trace.arrivals} at ${trace.ratePerS}/s for ${trace.durationS} s) to ${config.run.baseUrl}`,
  );
  const report = await runTrace(trace, config.run);
  const json = JSON.stringify(report, null, 2);
  console.log(config.json ? json : formatReport(report));
  if (config.out !== null) writeFileSync(config.out, json + '\n');
  return 0;
}

const invokedDirectly = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
