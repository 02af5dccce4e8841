// Named hardware profiles for the emulated replicas: one 8B-class model (Llama-3.1-8B-like, FP16)
// served by vLLM on different cards. model.ts explains how each parameter enters the scheduler.
//
// Where the numbers come from:
//   - Latencies: llm-d-inference-sim's published latency tables (docs/latency-profiles.md), which
//     collect vLLM, MLPerf and vendor benchmarks, and its "8B on H100, balanced" per-token profile
//     (inter-token 12 ms, prefill overhead 30 ms + 0.25 ms per uncached prompt token, load factor 2.0
//     at max-num-seqs). AIBrix's vllm-mock and the same tables put a 7–8B model on an H100 at
//     TTFT 60–120 ms (256-token prompt) and 10–15 ms between tokens; the h100 profile lands inside
//     both ranges (12 + 30 + 256 × 0.25 = 106 ms TTFT).
//   - Batch slowdown: the step time doubles between 1 running sequence and maxNumSeqs, i.e.
//     batchSlowdown = 1 / (maxNumSeqs − 1); this is llm-d-inference-sim's time-factor-under-load 2.0.
//   - Capacities (maxNumSeqs, kvCacheTokens) are SCALED DOWN from real cards. A real H100 running
//     vLLM's defaults takes 256 sequences and has room for ~400k tokens of an 8B model's KV cache
//     (128 KiB per token, ~50 GB free after the weights); a load generator sharing 2 cores with the
//     gateway cannot reach that, so queueing and KV pressure — the effects a load balancer exists
//     to manage — would never show. We keep per-request latencies realistic and shrink capacities
//     so that a few dozen concurrent streams per replica saturate it. Ratios between profiles follow
//     the cards (a100 ~0.8× the h100's capacity, l4 far less).
//   - Output lengths: a right-skewed log-normal, the shape of chat-trace output lengths (ShareGPT-
//     style workloads): median 128 tokens, most answers between 40 and 400, capped at 512.

/** Output length of a request that does not set max_tokens: log-normal, rounded, clamped. */
export interface OutputLengthDistribution {
  /** exp(mu) of the log-normal: half of the answers are shorter. */
  medianTokens: number;
  /** Standard deviation of ln(length); 0 makes every answer medianTokens long. */
  sigma: number;
  minTokens: number;
  /** Also the KV reservation of a request without max_tokens (vLLM reserves its default max_tokens). */
  maxTokens: number;
}

export interface ReplicaProfile {
  name: string;
  /** One line for listings and the CLI's help. */
  description: string;
  /** At most this many sequences run in one engine step (vLLM's --max-num-seqs). */
  maxNumSeqs: number;
  /** KV-cache capacity in tokens; allocated in 16-token blocks (vLLM's num_gpu_blocks × block_size). */
  kvCacheTokens: number;
  /** How many prompt tokens the prefix cache remembers, in 16-token blocks, least recently used out. */
  prefixCacheTokens: number;
  /** Prefill cost per prompt token not found in the prefix cache. */
  prefillMsPerToken: number;
  /** Fixed prefill cost per request (kernel launches, scheduling, sampling the first token). */
  prefillOverheadMs: number;
  /** Duration of a decode step with one running sequence: the inter-token latency at batch size 1. */
  decodeStepMs: number;
  /** Each extra running sequence lengthens a step by this fraction of decodeStepMs. */
  batchSlowdown: number;
  output: OutputLengthDistribution;
}

/** Shared by all profiles: the same model answers, only the card differs. */
const CHAT_OUTPUT: OutputLengthDistribution = { medianTokens: 128, sigma: 0.8, minTokens: 4, maxTokens: 512 };

/** Step time doubles from 1 to maxNumSeqs running sequences (llm-d-inference-sim's load factor 2.0). */
function doublingAtFullBatch(maxNumSeqs: number): number {
  return 1 / (maxNumSeqs - 1);
}

const H100_MAX_NUM_SEQS = 32;
/** 2048 blocks of 16 tokens: 32 sequences of 1k tokens (prompt + reservation) fit exactly. */
const H100_KV_TOKENS = 32_768;

/** The a100 keeps ~0.8× the h100's capacity; 1638 whole blocks ≈ 0.8 × 2048. */
const A100_MAX_NUM_SEQS = 26;
const A100_KV_TOKENS = 1638 * 16;

/** 24 GB of memory minus 16 GB of FP16 weights leaves little KV room; a quarter of the h100's here. */
const L4_MAX_NUM_SEQS = 16;
const L4_KV_TOKENS = 8192;

export const PROFILES: Readonly<Record<string, ReplicaProfile>> = {
  h100: {
    name: 'h100',
    description: '8B model on an H100 80GB: TTFT ~106 ms for 256 prompt tokens, 12 ms between tokens',
    maxNumSeqs: H100_MAX_NUM_SEQS,
    kvCacheTokens: H100_KV_TOKENS,
    // In vLLM cached prefix blocks live in the free part of the KV cache: the same pool size.
    prefixCacheTokens: H100_KV_TOKENS,
    // llm-d-inference-sim 8B/H100 row: 0.15–0.30 ms per token, overhead 25–40 ms.
    prefillMsPerToken: 0.25,
    prefillOverheadMs: 30,
    // 8B/H100 row: 10–15 ms; AIBrix vllm-mock: 10–15 ms.
    decodeStepMs: 12,
    batchSlowdown: doublingAtFullBatch(H100_MAX_NUM_SEQS),
    output: CHAT_OUTPUT,
  },
  a100: {
    name: 'a100',
    description: '8B model on an A100: ~1.5x the h100 step time, ~0.8x its capacity',
    maxNumSeqs: A100_MAX_NUM_SEQS,
    kvCacheTokens: A100_KV_TOKENS,
    prefixCacheTokens: A100_KV_TOKENS,
    // 8B/A100 row: 0.30–0.55 ms per token (1.6x the h100's 0.25); overhead is per request, not per card.
    prefillMsPerToken: 0.4,
    prefillOverheadMs: 30,
    // 8B/A100 row: 15–25 ms; 1.5x the h100's 12.
    decodeStepMs: 18,
    batchSlowdown: doublingAtFullBatch(A100_MAX_NUM_SEQS),
    output: CHAT_OUTPUT,
  },
  l4: {
    name: 'l4',
    description: '8B model on an L4 24GB: ~5x the h100 step time, a quarter of its KV cache',
    maxNumSeqs: L4_MAX_NUM_SEQS,
    kvCacheTokens: L4_KV_TOKENS,
    prefixCacheTokens: L4_KV_TOKENS,
    // Beyond the L40S row (0.65–1.00 ms): the L4 has about a third of the L40S's FP16 compute.
    prefillMsPerToken: 1.2,
    prefillOverheadMs: 40,
    // Decode is memory-bound: 16 GB of weights read per step over ~300 GB/s is ~53 ms at best.
    decodeStepMs: 60,
    batchSlowdown: doublingAtFullBatch(L4_MAX_NUM_SEQS),
    output: CHAT_OUTPUT,
  },
};

export const PROFILE_NAMES: readonly string[] = Object.keys(PROFILES);

/** The named profile; throws with the known names otherwise. */
export function resolveProfile(name: string): ReplicaProfile {
  if (!Object.prototype.hasOwnProperty.call(PROFILES, name)) {
    throw new Error(`unknown replica profile '${name}' (known: ${PROFILE_NAMES.join(', ')})`);
  }
  return PROFILES[name];
}
