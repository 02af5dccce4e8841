// The body of a 503 the gateways send when the balancer cannot route: OpenAI-style, so SDK
// clients (openai-python, LangChain, ...) surface the message instead of a parse error.

import type { NoReplicaReason } from './types';
import type { RejectedBecause } from './admission-queue';

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
 * The answer to a request admission turned away (admission.reject_status, 429 by default): it
 * waited past admission.max_wait_s, the queue was full, a higher band displaced it, or its band is
 * sheddable. OpenAI SDKs raise RateLimitError on a 429 and retry it after Retry-After.
 */
export function overloadedError(because: RejectedBecause, message: string, status: number): OpenAiError {
  return {
    error: {
      message: 'llm-balancer: ' + message,
      type: status === 429 ? 'rate_limit_error' : 'service_unavailable',
      code: because === 'timeout' ? 'queue_timeout' : because === 'full' ? 'queue_full' : because === 'shed' ? 'shed' : 'displaced',
      param: null,
    },
  };
}

/** The 429/503 of a request admission turned away: admission.reject_status, its JSON body, and Retry-After in seconds. */
export interface OverloadedAnswer {
  status: number;
  body: string;
  retryAfterS: number;
}

/**
 * What both gateways answer a request admission turned away. Retry-After is the longest a retry
 * would wait in the queue (admission.max_wait_s, at least 1 s): by then the pool has either
 * drained or is still saturated for a reason a quicker retry would not change.
 */
export function overloadedAnswer(admission: { reject_status: number; max_wait_s: number }, because: RejectedBecause, waitedMs: number): OverloadedAnswer {
  const status = admission.reject_status;
  return {
    status: status,
    body: JSON.stringify(overloadedError(because, overloadedMessage(because, waitedMs), status)),
    retryAfterS: Math.max(1, Math.ceil(admission.max_wait_s)),
  };
}

/** Why admission turned a request away, for its message. */
export function overloadedMessage(because: RejectedBecause, waitedMs: number): string {
  if (because === 'timeout') return 'every replica stayed saturated for the ' + (waitedMs / 1000).toFixed(1) + ' s this request waited (admission.max_wait_s)';
  if (because === 'full') return 'every replica is saturated and the gateway queue is full (admission.max_queue)';
  if (because === 'shed') return 'every replica is saturated and this request is sheddable (admission.priority below 0)';
  return 'every replica is saturated and a request of a higher priority took this one\'s place in the queue';
}

/**
 * The 404 for a model no replica serves: OpenAI's own answer to an unknown model
 * (type invalid_request_error, code model_not_found), so SDKs raise their NotFoundError.
 */
export function modelNotFoundError(message: string): OpenAiError {
  return { error: { message: 'llm-balancer: ' + message, type: 'invalid_request_error', code: 'model_not_found', param: null } };
}
