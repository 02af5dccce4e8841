// The configuration's public API: one schema, and everything derived from it.

export { validate, validateFields, formatErrors, defaults, rules } from './validate';
export type { ConfigError, ValidationResult, CrossFieldRule, PartialConfig } from './validate';
export { kongSchema } from './kong-schema';
export type { KongField, KongFieldSpec } from './kong-schema';
export { configTable, configRules, configSection } from './docs';
export { schema, fieldPaths, entryName, STRATEGIES, KEYLESS_STRATEGIES, NAMED_HASH_KEY_SOURCES } from './schema';
export type { FieldEntry, FieldSpec, FieldType, FieldPath, StringFormat } from './schema';
export type {
  BalancerConfig,
  StrategyName,
  KeylessStrategyName,
  HashKeySource,
  FailureKind,
  ReplicaConfig,
  HashKeyConfig,
  PassiveHealthConfig,
  ActiveHealthConfig,
} from './types';
