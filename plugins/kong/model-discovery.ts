// Learns what each replica serves from its own OpenAI model list (models.discovery): GET
// http://<address><models.path> of every replica the access phase would see, every refresh_s, on
// the loop the /metrics scraper and the health prober share (replica-rounds.ts). The list is parsed
// by the core (shared/model-discovery.ts: vLLM's base model and LoRA adapters with their parent,
// SGLang, llama.cpp) and kept here; the access phase reads it from memory and never waits.
//
// What counts as what:
// - a 200 with an OpenAI model list: the replica's list, replacing the last one;
// - an answer that is not a list (404, a server without /v1/models, a JSON of another shape): the
//   replica lists nothing, so its list is unknown (it stays a candidate for every model), and that
//   is not a failure: nothing is logged;
// - no answer (refused, timed out): a failure, one log line per streak (replica-rounds.ts), and the
//   last list read is KEPT: a replica that is briefly unreachable still serves what it served (the
//   health checks, not discovery, decide whether it may take traffic).

import type { ServedModels } from '../../shared/model-discovery';
import { listSignature, parseModelList } from '../../shared/model-discovery';
import type { Replica } from '../../shared/types';
import { fetchFailure } from './admin-api';
import { startReplicaRounds } from './replica-rounds';

export interface ModelDiscoveryOptions {
  /** models.path, e.g. /v1/models. */
  path: string;
  intervalMs: number;
  timeoutMs: number;
  /** The replicas to ask, asked at each round. */
  replicas: () => Replica[];
}

export interface ModelDiscovery {
  /** The replica's last list; null when it lists nothing (or was never read). */
  served(replicaId: string): ServedModels | null;
  /** Bumped whenever a replica's list changes: callers cache what they derive from the lists. */
  version(): number;
  /** Resolves when the round in flight, or else a new one, has finished (tests). */
  readNow(): Promise<void>;
  stop(): void;
}

/** Named in the replicas' access logs: an operator sees who reads their model list every refresh_s. */
export const DISCOVERY_USER_AGENT = 'llm-balancer-model-discovery';

type ReadResult = { ok: true; served: ServedModels | null } | { ok: false; error: string };

async function readList(url: string, timeoutMs: number): Promise<ReadResult> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, { headers: { Accept: 'application/json', 'User-Agent': DISCOVERY_USER_AGENT }, signal });
    const text = await response.text();
    if (response.status !== 200) return { ok: true, served: null };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: true, served: null };
    }
    return { ok: true, served: parseModelList(body) };
  } catch (error) {
    if (signal.aborted) return { ok: false, error: 'timed out after ' + timeoutMs + ' ms' };
    return { ok: false, error: fetchFailure(error) };
  }
}

export function startModelDiscovery(options: ModelDiscoveryOptions, log?: (message: string) => void): ModelDiscovery {
  const write = log !== undefined ? log : (message: string) => console.warn(message);
  const path = options.path.charAt(0) === '/' ? options.path : '/' + options.path;
  const lists = new Map<string, ServedModels | null>();
  const signatures = new Map<string, string>();
  let version = 0;
  const rounds = startReplicaRounds<ReadResult>(
    {
      intervalMs: options.intervalMs,
      replicas: options.replicas,
      read: (replica) => readList('http://' + replica.address + path, options.timeoutMs),
      settle: (replica, result) => {
        const url = 'http://' + replica.address + path;
        if (result.ok) {
          const text = listSignature(result.served);
          if (signatures.get(replica.id) !== text || !lists.has(replica.id)) {
            signatures.set(replica.id, text);
            lists.set(replica.id, result.served);
            version++;
          }
        }
        return {
          problem: result.ok ? null : result.error,
          failedLine: (problem) => 'llm-balancer: replica ' + replica.id + ': its model list ' + url + ' cannot be read (' + problem + '); the last list read is kept',
          recoveredLine: (failed) => 'llm-balancer: replica ' + replica.id + ': its model list ' + url + ' answers again (after ' + failed + ' failed reads)',
        };
      },
      roundFailedLine: 'llm-balancer: a model-list round failed',
    },
    write,
  );
  return {
    served: (replicaId) => {
      const served = lists.get(replicaId);
      return served === undefined ? null : served;
    },
    version: () => version,
    readNow: () => rounds.runNow(),
    stop: () => rounds.stop(),
  };
}
