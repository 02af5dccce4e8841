// The JSON error bodies the njs module answers with, OpenAI-style like the core's 503
// (shared/errors.ts), so SDK clients surface the message.

import { noReplicaError } from '../../shared/errors';

/** 502 body when every attempt failed and the plan has no replica left to try. */
export function exhaustedError(attempts: number): string {
  return JSON.stringify({
    error: {
      message:
        'llm-balancer: ' + (attempts === 1 ? 'the only attempt' : 'all ' + attempts + ' attempts') +
        ' failed (connect error, timeout or a retry_on status) and no other replica is available',
      type: 'bad_gateway',
      code: 'replicas_unreachable',
      param: null,
    },
  });
}

/** 503 body when the module itself failed (bad preloaded config, missing zone): never a silent wrong route. */
export function internalError(what: string): string {
  return JSON.stringify(noReplicaError('internal-error', what));
}
