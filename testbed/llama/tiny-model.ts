// A model of our own for llama-server: nothing can be downloaded here, so the tests write a GGUF
// file of architecture `llama` with seeded random weights and a minimal SentencePiece vocabulary.
// Its answers are nonsense; everything the balancer cares about is real — llama-server loads it,
// batches it over its slots, keeps its KV cache and per-slot prompt cache, and reports /metrics.
//
// Metadata written (llama.cpp's llama-arch.cpp / llama-model.cpp read these for LLM_ARCH_LLAMA):
//   general.architecture = "llama", general.name, general.alignment
//   llama.context_length, llama.embedding_length, llama.block_count, llama.feed_forward_length,
//   llama.attention.head_count, llama.attention.head_count_kv, llama.attention.layer_norm_rms_epsilon,
//   llama.rope.dimension_count, llama.rope.freq_base, llama.vocab_size
//   tokenizer.ggml.model = "llama" (SentencePiece), .tokens, .scores, .token_type,
//   .bos_token_id / .eos_token_id / .unknown_token_id, .add_bos_token, tokenizer.chat_template
// Tensors (dims in ggml order, ne[0] first; all F32):
//   token_embd.weight [embd, vocab], output_norm.weight [embd], output.weight [embd, vocab],
//   per layer blk.N.: attn_norm [embd], attn_q [embd, embd], attn_k / attn_v [embd, kv_dim],
//   attn_output [embd, embd], ffn_norm [embd], ffn_gate / ffn_up [embd, ff], ffn_down [ff, embd]
// The vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF> (SentencePiece's byte
// fallback, so any text tokenizes), then printable ASCII characters, "▁" + letter pieces and a few
// common words, so ordinary English text takes fewer tokens than bytes, as with a real tokenizer.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGguf } from './gguf';
import type { GgufTensor, GgufValue } from './gguf';

export interface TinyModelShape {
  /** Hidden size (llama.embedding_length). */
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  contextLength: number;
  seed: number;
}

/** For specs: loads in well under a second, a token costs microseconds. */
export const SPEC_MODEL: TinyModelShape = { embedding: 64, layers: 2, heads: 4, kvHeads: 2, feedForward: 128, contextLength: 4096, seed: 1 };

/**
 * For the real-server benchmark (bench/llama): big enough that a long prompt's prefill costs
 * hundreds of milliseconds on one core, so a prompt-cache hit shows in the time to first token,
 * small enough that two replicas on a 2-core machine answer a few requests per second (~3.4 M
 * parameters, 14 MB; measured with llama-server 0.7.0 on one thread of this machine: ~2,300 prompt
 * tokens/s, ~2 ms per output token).
 */
export const BENCH_MODEL: TinyModelShape = { embedding: 256, layers: 4, heads: 4, kvHeads: 2, feedForward: 768, contextLength: 16384, seed: 1 };

const COMMON_WORDS = [
  'the', 'of', 'and', 'to', 'in', 'is', 'that', 'for', 'it', 'as', 'with', 'was', 'on', 'be', 'at', 'by', 'this', 'are', 'or', 'from',
  'an', 'which', 'you', 'not', 'have', 'can', 'will', 'all', 'your', 'what', 'about', 'there', 'when', 'how', 'please', 'answer',
  'question', 'system', 'user', 'model', 'request', 'data', 'time', 'write', 'code', 'function', 'return', 'value', 'list', 'text',
];

export const SPACE_PIECE = '\u2581';

/** Token type codes of llama.cpp's llama_token_type. */
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

export interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
}

export function tinyVocabulary(): Vocabulary {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const scores: number[] = [0, 0, 0];
  const types: number[] = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    scores.push(0);
    types.push(TOKEN_BYTE);
  }
  const normal = (piece: string): void => {
    if (tokens.includes(piece)) return;
    tokens.push(piece);
    // SentencePiece merges the highest-scoring pair first: longer pieces win over their parts.
    scores.push(-100 + piece.length);
    types.push(TOKEN_NORMAL);
  };
  normal(SPACE_PIECE);
  for (let c = 0x21; c <= 0x7e; c++) normal(String.fromCharCode(c));
  for (let c = 0x61; c <= 0x7a; c++) normal(SPACE_PIECE + String.fromCharCode(c));
  for (let c = 0x41; c <= 0x5a; c++) normal(SPACE_PIECE + String.fromCharCode(c));
  // Every prefix of a word must be a piece too: SentencePiece only merges adjacent pieces it knows.
  for (const word of COMMON_WORDS) {
    for (let n = 2; n <= word.length; n++) normal(SPACE_PIECE + word.slice(0, n));
  }
  return { tokens, scores, types };
}

/** mulberry32: seeded, fast, good enough for weights nobody reads. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// A chat template with no special tokens: the roles are plain text, so any vocabulary renders it.
const CHAT_TEMPLATE =
  "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

export function tinyModelMetadata(shape: TinyModelShape, vocabulary: Vocabulary): Record<string, GgufValue> {
  return {
    'general.architecture': { type: 'string', value: 'llama' },
    'general.name': { type: 'string', value: `llm-balancer-random-${shape.embedding}x${shape.layers}` },
    'general.alignment': { type: 'u32', value: 32 },
    'llama.context_length': { type: 'u32', value: shape.contextLength },
    'llama.embedding_length': { type: 'u32', value: shape.embedding },
    'llama.block_count': { type: 'u32', value: shape.layers },
    'llama.feed_forward_length': { type: 'u32', value: shape.feedForward },
    'llama.attention.head_count': { type: 'u32', value: shape.heads },
    'llama.attention.head_count_kv': { type: 'u32', value: shape.kvHeads },
    'llama.attention.layer_norm_rms_epsilon': { type: 'f32', value: 1e-5 },
    'llama.rope.dimension_count': { type: 'u32', value: shape.embedding / shape.heads },
    'llama.rope.freq_base': { type: 'f32', value: 10000 },
    'llama.vocab_size': { type: 'u32', value: vocabulary.tokens.length },
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'array', of: 'string', value: vocabulary.tokens },
    'tokenizer.ggml.scores': { type: 'array', of: 'f32', value: vocabulary.scores },
    'tokenizer.ggml.token_type': { type: 'array', of: 'i32', value: vocabulary.types },
    'tokenizer.ggml.unknown_token_id': { type: 'u32', value: 0 },
    'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
    'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
    'tokenizer.ggml.add_bos_token': { type: 'bool', value: true },
    'tokenizer.chat_template': { type: 'string', value: CHAT_TEMPLATE },
  };
}

export function tinyModelTensors(shape: TinyModelShape, vocabularySize: number): GgufTensor[] {
  const { embedding, feedForward, heads, kvHeads } = shape;
  if (embedding % heads !== 0) throw new Error(`embedding ${embedding} is not a multiple of heads ${heads}`);
  if (heads % kvHeads !== 0) throw new Error(`heads ${heads} is not a multiple of kvHeads ${kvHeads}`);
  const kvDim = (embedding / heads) * kvHeads;
  const random = seeded(shape.seed);
  // Uniform in ±scale/√fan-in keeps activations of order one through the layers.
  const uniform = (fanIn: number, scale = 1) => (out: Float32Array) => {
    const bound = scale / Math.sqrt(fanIn);
    for (let i = 0; i < out.length; i++) out[i] = (random() * 2 - 1) * bound;
  };
  const ones = (out: Float32Array) => out.fill(1);
  const tensors: GgufTensor[] = [{ name: 'token_embd.weight', dims: [embedding, vocabularySize], fill: uniform(1, 1) }];
  for (let layer = 0; layer < shape.layers; layer++) {
    const p = `blk.${layer}.`;
    tensors.push(
      { name: p + 'attn_norm.weight', dims: [embedding], fill: ones },
      { name: p + 'attn_q.weight', dims: [embedding, embedding], fill: uniform(embedding) },
      { name: p + 'attn_k.weight', dims: [embedding, kvDim], fill: uniform(embedding) },
      { name: p + 'attn_v.weight', dims: [embedding, kvDim], fill: uniform(embedding) },
      { name: p + 'attn_output.weight', dims: [embedding, embedding], fill: uniform(embedding) },
      { name: p + 'ffn_norm.weight', dims: [embedding], fill: ones },
      { name: p + 'ffn_gate.weight', dims: [embedding, feedForward], fill: uniform(embedding) },
      { name: p + 'ffn_up.weight', dims: [embedding, feedForward], fill: uniform(embedding) },
      { name: p + 'ffn_down.weight', dims: [feedForward, embedding], fill: uniform(feedForward) },
    );
  }
  tensors.push({ name: 'output_norm.weight', dims: [embedding], fill: ones }, { name: 'output.weight', dims: [embedding, vocabularySize], fill: uniform(embedding, 4) });
  return tensors;
}

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MODEL_DIR = path.join(REPO_ROOT, '.cache', 'llama', 'models');
// Bumped when what is written for a shape changes, so stale files are not reused.
const FORMAT_REVISION = 1;

/** Writes the model for `shape` once (cached by its parameters) and returns its path. */
export function ensureTinyModel(shape: TinyModelShape = SPEC_MODEL, dir: string = MODEL_DIR): string {
  const key = crypto.createHash('sha256').update(JSON.stringify([FORMAT_REVISION, shape])).digest('hex').slice(0, 12);
  const file = path.join(dir, `random-llama-${shape.embedding}x${shape.layers}-${key}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const vocabulary = tinyVocabulary();
  writeGguf(file, tinyModelMetadata(shape, vocabulary), tinyModelTensors(shape, vocabulary.tokens.length));
  return file;
}
