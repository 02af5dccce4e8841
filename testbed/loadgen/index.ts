// The open-loop LLM load generator: seeded traces (arrivals × request mix), a streaming OpenAI
// client, HDR-histogram statistics and the run report. `testbed/loadgen/cli.ts` is its command line.

export { createRandom, uniformInt, exponential, weightedIndex, type Random } from './random';
export { arrivalTimesMs, poissonArrivalTimesMs, uniformArrivalTimesMs, ARRIVAL_MODES, type ArrivalMode } from './arrivals';
export {
  API_PATHS,
  CHARS_PER_TOKEN,
  MIXES,
  REQUEST_KINDS,
  REQUEST_SHAPES,
  SHARED_PREFIX_SHAPE,
  MANY_PREFIXES_SHAPE,
  FLEET_PREFIXES_SHAPE,
  MULTI_LORA_SHAPE,
  MULTI_MODEL_NAMES,
  createRequestGenerator,
  loraAdapterName,
  zipfWeights,
  generateRequests,
  resolveMix,
  syntheticText,
  tokensByCharRule,
  type Api,
  type ChatCompletionBody,
  type ChatMessage,
  type CompletionBody,
  type LoadRequest,
  type Mix,
  type MixComponent,
  type RequestGeneratorOptions,
  type RequestKind,
  type RequestShape,
  type TokenRange,
} from './mixes';
export {
  DEFAULT_MAX_SOCKETS,
  ERROR_KINDS,
  SseParser,
  createClient,
  type ClientOptions,
  type ClientResult,
  type ErrorKind,
  type LoadClient,
  type SendableRequest,
  type SseEvent,
} from './client';
export { MetricHistogram, summarise, MICROS_PER_MS, SIGNIFICANT_DIGITS, type MetricSummary } from './stats';
export {
  METRIC_ROWS,
  buildReport,
  peakInFlight,
  formatReport,
  meetsSlo,
  type ReplicaShare,
  type Report,
  type ReportOptions,
  type RequestRecord,
  type Slo,
  type TraceInfo,
} from './report';
export {
  DEFAULT_MODEL,
  buildTrace,
  executeTrace,
  runTrace,
  traceInfo,
  type BuildTraceOptions,
  type RunOptions,
  type RunResult,
  type Trace,
  type TraceEntry,
} from './run';
