// The public surface of the strategy core, for the adapters and the benchmark.

export { consultsPrefixTable, createBalancer, modelRewrite, needsRequestBody, placesAdapters, prefixTableKeys, rewritesModel, routesByModel, readsBody, readsHashKey, readsReplicaLoad, readsTokens, replicasFromConfig } from './balancer';
export type { Balancer, BalancerDeps, ReplicaState, ReplicaStatus } from './balancer';
export { modelNotFoundError, noReplicaError, overloadedAnswer, overloadedError, overloadedMessage } from './errors';
export type { OverloadedAnswer } from './errors';
export type { OpenAiError } from './errors';
export { createMemoryStore } from './memory-store';
export type { MemoryStore } from './memory-store';
export { recordProbe } from './health/active';
export type { ActiveThresholds } from './health/active';
export { resolveHashKey } from './hash-key';
export * from './config/index';
export type * from './types';
export { splitAddress } from './address';
export { readLlmRequest } from './llm-request';
export type { LlmParse, LlmRequest } from './llm-request';
export type { HostPort } from './address';
export { createSeededRandom } from './random';
