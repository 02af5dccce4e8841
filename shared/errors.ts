// The body of a 503 the gateways send when the balancer cannot route: OpenAI-style, so SDK
// clients (openai-python, LangChain, ...) surface the message instead of a parse error.

import type { NoReplicaReason } from './types';

export interface OpenAiError {
  error: { message: string; type: string; code: string; param: null };
}

export function noReplicaError(reason: NoReplicaReason | 'internal-error', message: string): OpenAiError {
  return {
    error: {
      message: 'llm-balancer: ' + message,
      type: 'service_unavailable',
      code: reason.replace(/-/g, '_'),
      param: null,
    },
  };
}

/**
 * The 404 for a model no replica serves: OpenAI's own answer to an unknown model
 * (type invalid_request_error, code model_not_found), so SDKs raise their NotFoundError.
 */
export function modelNotFoundError(message: string): OpenAiError {
  return { error: { message: 'llm-balancer: ' + message, type: 'invalid_request_error', code: 'model_not_found', param: null } };
}
