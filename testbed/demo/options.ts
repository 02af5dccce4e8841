// `npm start` flags. Every flag has a default that gives the full demo; errors name the flag and
// what it accepts.

import { PROFILE_NAMES } from '../emulator/index';
import { STRATEGIES } from '../../shared/config/schema';

export interface DemoOptions {
  strategy: string;
  /** One emulated replica per entry, by profile name. */
  replicas: string[];
  /** Demo traffic, requests per second (0: none). */
  ratePerS: number;
  /** Gateway port (0: a free one). */
  port: number;
  /** Emulator time scale: 1 = real card timings, 0.1 = ten times faster. */
  timeScale: number;
  /** Stop after this many seconds (0: run until Ctrl-C). */
  durationS: number;
  seed: number;
}

// The strategy `npm start` runs by default: least-connections until the shootout (npm run bench)
// says otherwise; on heterogeneous replicas it keeps the slower cards from queueing.
export const DEFAULT_STRATEGY = 'least-connections';

export const USAGE = `usage: npm start -- [options]
  --strategy NAME      ${STRATEGIES.join(' | ')} (default ${DEFAULT_STRATEGY})
  --replicas LIST      emulated replica profiles, comma-separated: ${PROFILE_NAMES.join(', ')} (default h100,h100,a100,a100)
  --rate N             demo requests per second, open loop (default 2)
  --no-traffic         no demo traffic: send your own requests to the gateway
  --port N             gateway port on 127.0.0.1 (default 8080, or a free port when 8080 is taken)
  --time-scale X       emulator speed: 1 = real card timings, 0.1 = ten times faster (default 1)
  --duration S         stop after S seconds (default: run until Ctrl-C)
  --seed N             seed of the emulators and the demo traffic (default 1)`;

export class UsageError extends Error {}

function number(flag: string, text: string | undefined, min: number, max: number): number {
  const value = Number(text);
  if (text === undefined || text === '' || !Number.isFinite(value) || value < min || value > max) {
    throw new UsageError(`${flag}: must be a number between ${min} and ${max}, got ${text === undefined ? 'nothing' : JSON.stringify(text)}`);
  }
  return value;
}

export function parseDemoArgs(argv: string[]): DemoOptions {
  const options: DemoOptions = { strategy: DEFAULT_STRATEGY, replicas: ['h100', 'h100', 'a100', 'a100'], ratePerS: 2, port: 8080, timeScale: 1, durationS: 0, seed: 1 };
  let portGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    switch (flag) {
      case '--strategy':
        if (!value || !STRATEGIES.includes(value)) throw new UsageError(`--strategy: must be one of ${STRATEGIES.join(', ')}, got ${JSON.stringify(value ?? '')}`);
        options.strategy = value;
        i++;
        break;
      case '--replicas': {
        const list = (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
        const unknown = list.filter((p) => !PROFILE_NAMES.includes(p));
        if (list.length === 0 || list.length > 16 || unknown.length > 0) {
          throw new UsageError(`--replicas: must be 1 to 16 of ${PROFILE_NAMES.join(', ')}, comma-separated, got ${JSON.stringify(value ?? '')}`);
        }
        options.replicas = list;
        i++;
        break;
      }
      case '--rate':
        options.ratePerS = number(flag, value, 0, 1000);
        i++;
        break;
      case '--no-traffic':
        options.ratePerS = 0;
        break;
      case '--port':
        options.port = number(flag, value, 0, 65535);
        portGiven = true;
        i++;
        break;
      case '--time-scale':
        options.timeScale = number(flag, value, 0.001, 100);
        i++;
        break;
      case '--duration':
        options.durationS = number(flag, value, 0, 86400);
        i++;
        break;
      case '--seed':
        options.seed = number(flag, value, 0, 2 ** 31);
        i++;
        break;
      case '--help':
      case '-h':
        throw new UsageError('');
      default:
        throw new UsageError(`unknown option ${JSON.stringify(flag)}`);
    }
  }
  if (!portGiven) options.port = -1; // 8080 when free, else any free port (decided at start)
  return options;
}
