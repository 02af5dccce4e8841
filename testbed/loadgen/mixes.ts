// Request mixes: what each request of a trace asks for. A mix is a weighted list of request kinds;
// each kind draws its prompt and output lengths from a range, the way vLLM's benchmark_serving
// "random" dataset and llm-d's inference-perf synthetic data do. Everything is drawn from the
// trace's seed, so a seed gives the same requests, byte for byte, on every run.
//
// Prompts are synthetic English-like text (a fixed word list). Their token count follows the rule
// tokens = ceil(chars / 4) (CHARS_PER_TOKEN): every piece of text is exactly 4 × tokens characters
// long, so a prompt's count is the same whether a reader sums its messages or joins them first.
// Every prompt starts with a tag unique to its request (or its conversation turn), so two requests
// never share a prefix by accident; only the shared-prefix kind shares one, on purpose.
//
// Models: a request names the generator's `model`, unless its mix component names another
// (multi-model) or its kind picks one (lora-chat names a LoRA adapter). Adapter choices come from a
// random stream of their own, so multi-lora's prompts are short-chat's prompts for the same seed,
// and no existing mix's trace moves (spec/loadgen-trace-pins.spec.ts pins them).

import { createRandom, uniformInt, weightedIndex, type Random } from './random';

/** The token-count rule of the whole benchmark: one token per 4 characters, rounded up. */
export const CHARS_PER_TOKEN = 4;

/** Intended token count of `text` under the benchmark's rule. */
export function tokensByCharRule(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

export type RequestKind = 'short-chat' | 'long-prompt' | 'long-generation' | 'shared-prefix' | 'hot-prefix' | 'many-prefixes' | 'fleet-prefixes' | 'lora-chat';

export const REQUEST_KINDS: readonly RequestKind[] = ['short-chat', 'long-prompt', 'long-generation', 'shared-prefix', 'hot-prefix', 'many-prefixes', 'fleet-prefixes', 'lora-chat'];

/** Which OpenAI endpoint the bodies are written for. */
export type Api = 'chat' | 'completions';

export const API_PATHS: Record<Api, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
};

/** An inclusive range of token counts; each value in it is equally likely. */
export interface TokenRange {
  min: number;
  max: number;
}

export interface RequestShape {
  promptTokens: TokenRange;
  outputTokens: TokenRange;
}

/** The single-turn kinds. Ranges follow the brief; the reasons are the workloads they stand for. */
export const REQUEST_SHAPES: Record<Exclude<RequestKind, 'shared-prefix' | 'hot-prefix' | 'many-prefixes' | 'fleet-prefixes' | 'lora-chat'>, RequestShape> = {
  // An interactive chat turn: both phases short, TTFT-sensitive.
  'short-chat': { promptTokens: { min: 50, max: 200 }, outputTokens: { min: 50, max: 150 } },
  // RAG / summarisation: prefill-bound, the replica is busy long before the first token.
  'long-prompt': { promptTokens: { min: 1000, max: 4000 }, outputTokens: { min: 20, max: 100 } },
  // Writing / code generation: decode-bound, holds a replica's batch slot for a long time.
  'long-generation': { promptTokens: { min: 50, max: 200 }, outputTokens: { min: 400, max: 1000 } },
};

/**
 * The multi-turn kind, for prefix-cache affinity: K long system prompts (agents, tools
 * definitions) shared by many conversations, each conversation re-sending its whole history.
 */
export const SHARED_PREFIX_SHAPE = {
  /** K: few enough that every prefix recurs often, more than one so affinity has a choice to make. */
  prefixCount: 4,
  /** Long enough that a cache hit saves a real prefill (vLLM caches in 16-token blocks). */
  prefixTokens: { min: 1000, max: 2000 } as TokenRange,
  /** Conversations open at once; a request continues one of them, chosen uniformly. */
  activeConversations: 16,
  /** After this many turns a conversation ends and a new one (new id) takes its place; also bounds prompt growth. */
  turnsPerConversation: 6,
  userTurnTokens: { min: 50, max: 150 } as TokenRange,
  outputTokens: { min: 50, max: 150 } as TokenRange,
  /**
   * hot-prefix only: the share of NEW conversations that open on prefix 0 (the rest spread over the
   * others): a skew where one system prompt carries about half the traffic, the case where
   * prefix-only routing melts one replica.
   */
  hotShare: 0.5,
};

/**
 * many-prefixes: the same conversations over 24 longer shared prompts (RAG contexts, agents with
 * long tool lists): ~54k prompt tokens in all, more than one emulated replica's prefix cache
 * (32k tokens on the h100 profile), so a replica that is sent every prefix keeps evicting them,
 * while one that is sent a quarter of them keeps its share cached.
 */
export const MANY_PREFIXES_SHAPE = Object.assign({}, SHARED_PREFIX_SHAPE, {
  prefixCount: 24,
  prefixTokens: { min: 1500, max: 3000 } as TokenRange,
  activeConversations: 64,
});

/**
 * fleet-prefixes: 48 shared prompts, ~108k tokens: about what the four replicas' caches hold
 * together (2 × 32k + 2 × 26k), four times what one holds. The regime cache-aware routing is for
 * (SGLang's and llm-d's published wins): sent every prefix, a replica keeps about a quarter of
 * them; sent its share, it keeps nearly all of its own. The three prefix mixes are a sweep of the
 * prefix working set against one replica's cache: below it (shared-prefix), ~1.7x (many-), ~3.4x (fleet-).
 */
export const FLEET_PREFIXES_SHAPE = Object.assign({}, SHARED_PREFIX_SHAPE, {
  prefixCount: 48,
  prefixTokens: { min: 1500, max: 3000 } as TokenRange,
  activeConversations: 64,
});

/**
 * lora-chat: a short-chat turn sent to one of many LoRA adapters of one base model, the
 * multi-tenant case (a fine-tune per customer or task) that LoRA-aware routing is for. Adapter
 * popularity is Zipf: the adapter of rank r (from 1) is asked with probability ∝ 1 / r^s. Tenant
 * and adapter traffic in multi-LoRA serving studies is heavy-tailed this way (S-LoRA and dLoRA
 * draw adapter popularity from power laws); s = 1 puts ~26% of requests on the most popular of
 * 24 adapters and ~1% on the least. 24 adapters are six times an emulated replica's default 4 GPU
 * slots, so a replica sent every adapter keeps loading them, one sent a quarter of them does not.
 * Replicas must serve the names: the emulator's `--lora-adapters 'adapter-*'`.
 */
export const MULTI_LORA_SHAPE = {
  adapterCount: 24,
  adapterPrefix: 'adapter-',
  zipfExponent: 1.0,
  shape: REQUEST_SHAPES['short-chat'],
};

/** The name of the adapter of popularity rank `index` (0 = most popular): adapter-00 .. adapter-23. */
export function loraAdapterName(index: number): string {
  return MULTI_LORA_SHAPE.adapterPrefix + String(index).padStart(2, '0');
}

/** Zipf weights of the adapters, most popular first: 1 / (index + 1)^s. */
export function zipfWeights(count: number, exponent: number): number[] {
  return Array.from({ length: count }, (_, index) => 1 / Math.pow(index + 1, exponent));
}

/**
 * multi-model: two base models behind one gateway, the larger share on the first; replicas serve
 * one or the other (the emulator's `--models 1:model-a --models 2:model-b`), so a balancer must
 * route by the `model` field or earn 404s.
 */
export const MULTI_MODEL_NAMES = { first: 'model-a', second: 'model-b' };

export interface MixComponent {
  kind: RequestKind;
  weight: number;
  /** The `model` its requests name, instead of the generator's model. */
  model?: string;
  /** lora-chat: how many adapters its requests spread over (default MULTI_LORA_SHAPE.adapterCount). */
  adapters?: number;
}

export interface Mix {
  name: string;
  components: readonly MixComponent[];
}

export const MIXES: Readonly<Record<string, Mix>> = {
  'short-chat': { name: 'short-chat', components: [{ kind: 'short-chat', weight: 1 }] },
  'long-prompt': { name: 'long-prompt', components: [{ kind: 'long-prompt', weight: 1 }] },
  'long-generation': { name: 'long-generation', components: [{ kind: 'long-generation', weight: 1 }] },
  'shared-prefix': { name: 'shared-prefix', components: [{ kind: 'shared-prefix', weight: 1 }] },
  // The shared-prefix conversations with one system prompt taking about half of them.
  'hot-prefix': { name: 'hot-prefix', components: [{ kind: 'hot-prefix', weight: 1 }] },
  // Conversations over more shared prompts than one replica's prefix cache holds.
  'many-prefixes': { name: 'many-prefixes', components: [{ kind: 'many-prefixes', weight: 1 }] },
  // Shared prompts about as large as the whole fleet's prefix caches together.
  'fleet-prefixes': { name: 'fleet-prefixes', components: [{ kind: 'fleet-prefixes', weight: 1 }] },
  // Chat turns to 24 LoRA adapters of one base model, Zipf popularity (MULTI_LORA_SHAPE).
  'multi-lora': { name: 'multi-lora', components: [{ kind: 'lora-chat', weight: 1 }] },
  // The same over 16 adapters: as many as 4 replicas' 4 GPU slots hold together, so a placement
  // that keeps each adapter on its replicas can avoid nearly every load; with 24, 8 adapters
  // beyond the fleet's slots are always loaded somewhere.
  'multi-lora-16': { name: 'multi-lora-16', components: [{ kind: 'lora-chat', weight: 1, adapters: 16 }] },
  // Chat turns to two base models, 60/40 (MULTI_MODEL_NAMES).
  'multi-model': {
    name: 'multi-model',
    components: [
      { kind: 'short-chat', weight: 0.6, model: MULTI_MODEL_NAMES.first },
      { kind: 'short-chat', weight: 0.4, model: MULTI_MODEL_NAMES.second },
    ],
  },
  // Mostly chat, with enough prefill-heavy and decode-heavy requests that replicas' loads diverge.
  mixed: {
    name: 'mixed',
    components: [
      { kind: 'short-chat', weight: 0.5 },
      { kind: 'long-prompt', weight: 0.25 },
      { kind: 'long-generation', weight: 0.25 },
    ],
  },
};

/** A mix by name (listing the known names when it is unknown), or a custom mix checked as is. */
export function resolveMix(mix: string | Mix): Mix {
  if (typeof mix === 'string') {
    if (!Object.prototype.hasOwnProperty.call(MIXES, mix)) {
      throw new RangeError(`unknown mix '${mix}' (known: ${Object.keys(MIXES).join(', ')})`);
    }
    return MIXES[mix];
  }
  if (mix.components.length === 0) throw new RangeError(`mix '${mix.name}' has no components`);
  for (const component of mix.components) {
    if (!REQUEST_KINDS.includes(component.kind)) throw new RangeError(`mix '${mix.name}': unknown kind '${component.kind}'`);
    if (component.model !== undefined && (typeof component.model !== 'string' || component.model === '')) {
      throw new RangeError(`mix '${mix.name}': the model of '${component.kind}' must be a non-empty string`);
    }
    if (component.adapters !== undefined && !(Number.isInteger(component.adapters) && component.adapters >= 1 && component.adapters <= 100)) {
      throw new RangeError(`mix '${mix.name}': adapters of '${component.kind}' must be a whole number from 1 to 100`);
    }
    if (!(component.weight >= 0) || !Number.isFinite(component.weight)) {
      throw new RangeError(`mix '${mix.name}': weight of '${component.kind}' must be finite and >= 0`);
    }
  }
  if (!mix.components.some((component) => component.weight > 0)) throw new RangeError(`mix '${mix.name}' has no positive weight`);
  return mix;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

interface StreamingFields {
  model: string;
  max_tokens: number;
  stream: true;
  stream_options: { include_usage: true };
  /** The conversation id of shared-prefix requests (OpenAI's end-user field). */
  user?: string;
}

export interface ChatCompletionBody extends StreamingFields {
  messages: ChatMessage[];
}

export interface CompletionBody extends StreamingFields {
  prompt: string;
}

/** One request of a trace: everything needed to send it, plus what it was meant to be. */
export interface LoadRequest {
  /** Unique in its trace; also sent as x-request-id. */
  id: string;
  kind: RequestKind;
  /** The endpoint the body is written for (runTrace may override it). */
  path: string;
  headers: Record<string, string>;
  body: ChatCompletionBody | CompletionBody;
  /** Prompt tokens under the ceil(chars / 4) rule. */
  promptTokens: number;
  /** Output tokens asked for (= max_tokens). */
  outputTokens: number;
  /** shared-prefix only: the conversation (x-session-id header and `user` field). */
  sessionId: string | null;
  /** shared-prefix only: which of the K shared prefixes the prompt starts with. */
  prefixIndex: number | null;
}

export interface RequestGeneratorOptions {
  seed: number;
  mix: string | Mix;
  model: string;
  api?: Api;
}

/** The first `count` requests of the seed's sequence for `mix`. */
export function generateRequests(count: number, options: RequestGeneratorOptions): LoadRequest[] {
  const next = createRequestGenerator(options);
  const requests: LoadRequest[] = [];
  for (let i = 0; i < count; i++) requests.push(next());
  return requests;
}

/** A stateful sequence of requests (shared-prefix conversations grow as it advances). */
export function createRequestGenerator(options: RequestGeneratorOptions): () => LoadRequest {
  const mix = resolveMix(options.mix);
  const api: Api = options.api ?? 'chat';
  const weights = mix.components.map((component) => component.weight);
  const kindRandom = createRandom(options.seed, 'kinds');
  const shapeRandom = createRandom(options.seed, 'shapes');
  const conversations = createConversations(options.seed, null);
  const hotConversations = createConversations(options.seed, SHARED_PREFIX_SHAPE.hotShare);
  const manyConversations = createConversations(options.seed, null, MANY_PREFIXES_SHAPE, 'm');
  const fleetConversations = createConversations(options.seed, null, FLEET_PREFIXES_SHAPE, 'f');
  // A stream of its own: drawing adapters shifts no other stream of the seed.
  const adapterRandom = createRandom(options.seed, 'lora-adapters');
  const adapterWeights = mix.components.map((component) => zipfWeights(component.adapters ?? MULTI_LORA_SHAPE.adapterCount, MULTI_LORA_SHAPE.zipfExponent));
  let index = 0;

  return () => {
    const id = 'r' + String(index).padStart(6, '0');
    index++;
    const component = mix.components[weightedIndex(kindRandom, weights)];
    const kind = component.kind;
    let model = component.model ?? options.model;
    let messages: ChatMessage[];
    let outputTokens: number;
    let sessionId: string | null = null;
    let prefixIndex: number | null = null;
    if (kind === 'shared-prefix' || kind === 'hot-prefix' || kind === 'many-prefixes' || kind === 'fleet-prefixes') {
      const source = kind === 'hot-prefix' ? hotConversations : kind === 'many-prefixes' ? manyConversations : kind === 'fleet-prefixes' ? fleetConversations : conversations;
      const turn = source.nextTurn();
      messages = turn.messages;
      outputTokens = turn.outputTokens;
      sessionId = turn.sessionId;
      prefixIndex = turn.prefixIndex;
    } else {
      if (kind === 'lora-chat') model = loraAdapterName(weightedIndex(adapterRandom, adapterWeights[mix.components.indexOf(component)]));
      const shape = kind === 'lora-chat' ? MULTI_LORA_SHAPE.shape : REQUEST_SHAPES[kind];
      const promptTokens = drawTokens(shapeRandom, shape.promptTokens);
      outputTokens = drawTokens(shapeRandom, shape.outputTokens);
      messages = [{ role: 'user', content: syntheticText(shapeRandom, promptTokens, '[' + id + '] ') }];
    }
    const promptTokens = messages.reduce((sum, message) => sum + tokensByCharRule(message.content), 0);
    const streaming: StreamingFields = {
      model,
      max_tokens: outputTokens,
      stream: true,
      stream_options: { include_usage: true },
    };
    if (sessionId !== null) streaming.user = sessionId;
    const body: ChatCompletionBody | CompletionBody =
      api === 'chat'
        ? { ...streaming, messages }
        : { ...streaming, prompt: messages.map((message) => message.content).join('') };
    const headers: Record<string, string> = { 'x-request-id': id };
    if (sessionId !== null) headers['x-session-id'] = sessionId;
    return { id, kind, path: API_PATHS[api], headers, body, promptTokens, outputTokens, sessionId, prefixIndex };
  };
}

interface ConversationTurn {
  messages: ChatMessage[];
  outputTokens: number;
  sessionId: string;
  prefixIndex: number;
}

interface Conversation {
  id: string;
  prefixIndex: number;
  /** Everything after the system prompt, as re-sent by the next turn. */
  history: ChatMessage[];
  turns: number;
}

/**
 * The shared-prefix state: K system prompts and the open conversations that reuse them. With
 * `hotShare`, a new conversation opens on prefix 0 with that probability, else on one of the others.
 */
function createConversations(
  seed: number,
  hotShare: number | null,
  shape: typeof SHARED_PREFIX_SHAPE = SHARED_PREFIX_SHAPE,
  idPrefix: string = hotShare === null ? 's' : 'h',
): { nextTurn(): ConversationTurn } {
  // Streams of their own: the prefixes of a seed do not depend on the mix or on the other kinds.
  const prefixRandom = createRandom(seed, idPrefix === 'm' ? 'many-prefixes' : idPrefix === 'f' ? 'fleet-prefixes' : 'prefixes');
  const turnRandom = createRandom(
    seed,
    idPrefix === 'm' ? 'many-conversations' : idPrefix === 'f' ? 'fleet-conversations' : hotShare === null ? 'conversations' : 'hot-conversations',
  );
  const prefixes: string[] = [];
  for (let k = 0; k < shape.prefixCount; k++) {
    prefixes.push(syntheticText(prefixRandom, drawTokens(prefixRandom, shape.prefixTokens), '[system prompt ' + k + '] '));
  }
  let opened = 0;
  const open = (): Conversation => {
    const conversation = {
      id: idPrefix + seed + '-c' + String(opened).padStart(4, '0'),
      prefixIndex:
        hotShare === null ? uniformInt(turnRandom, 0, shape.prefixCount - 1) : turnRandom.next() < hotShare ? 0 : uniformInt(turnRandom, 1, shape.prefixCount - 1),
      history: [],
      turns: 0,
    };
    opened++;
    return conversation;
  };
  // Opened lazily: a mix where shared-prefix has weight 0 never draws from these streams.
  const active: Conversation[] = [];

  return {
    nextTurn() {
      if (active.length === 0) for (let i = 0; i < shape.activeConversations; i++) active.push(open());
      const slot = uniformInt(turnRandom, 0, active.length - 1);
      const conversation = active[slot];
      const userTokens = drawTokens(turnRandom, shape.userTurnTokens);
      const outputTokens = drawTokens(turnRandom, shape.outputTokens);
      const tag = '[' + conversation.id + ' turn ' + conversation.turns + '] ';
      const user: ChatMessage = { role: 'user', content: syntheticText(turnRandom, userTokens, tag) };
      const system: ChatMessage = { role: 'system', content: prefixes[conversation.prefixIndex] };
      const messages: ChatMessage[] = [system, ...conversation.history, user];
      // The reply the next turn re-sends is synthetic: the generator never waits for the real one
      // (open loop), and a fixed reply keeps the trace identical whichever gateway runs it.
      conversation.history.push(user, { role: 'assistant', content: syntheticText(turnRandom, outputTokens, '[reply] ') });
      conversation.turns++;
      if (conversation.turns >= shape.turnsPerConversation) active[slot] = open();
      return { messages, outputTokens, sessionId: conversation.id, prefixIndex: conversation.prefixIndex };
    },
  };
}

function drawTokens(random: Random, range: TokenRange): number {
  return uniformInt(random, range.min, range.max);
}

/**
 * Text of exactly tokens × CHARS_PER_TOKEN characters: `tag`, then a slice of the corpus starting
 * at a random offset (wrapping around).
 */
export function syntheticText(random: Random, tokens: number, tag: string): string {
  const chars = tokens * CHARS_PER_TOKEN;
  if (tag.length >= chars) return tag.slice(0, chars);
  const corpus = getCorpus();
  let text = tag;
  let offset = Math.floor(random.next() * corpus.length);
  while (text.length < chars) {
    text += corpus.slice(offset, offset + (chars - text.length));
    offset = 0;
  }
  return text;
}

/** Common English words: average length near 4–5 letters, so ~4 characters per token is realistic. */
const WORDS = (
  'the of and to in is that for it as with was on be by at this are from or have an they which one you ' +
  'had not but what all were when we there can more if no out so said up its about into than them only ' +
  'other time new some could these two may first then do any like my now over such our man me even most ' +
  'made after also did many before must through back years where much your way well down should because ' +
  'each just those people how too little state good very make world still own see men work long get here ' +
  'between both life being under never day same another know while last might us great old year off come ' +
  'since against go came right used take three model replica token cache prompt request server latency'
).split(' ');

/** Corpus size: at least one longest prompt (4000 tokens = 16000 chars) fits without wrapping twice. */
const CORPUS_CHARS = 32768;
/** The corpus is the same for every seed; seeds choose where prompts start in it. */
const CORPUS_SEED = 20240607;

let corpus: string | null = null;

function getCorpus(): string {
  if (corpus !== null) return corpus;
  const random = createRandom(CORPUS_SEED, 'corpus');
  const words: string[] = [];
  let length = 0;
  let sentenceWords = 0;
  while (length < CORPUS_CHARS) {
    let word = WORDS[Math.floor(random.next() * WORDS.length)];
    if (sentenceWords === 0) word = word[0].toUpperCase() + word.slice(1);
    sentenceWords++;
    // Sentences of 8 + (geometric, mean 6) words: the text has the punctuation real prompts have.
    if (sentenceWords >= 8 && random.next() < 1 / 6) {
      word += '.';
      sentenceWords = 0;
    }
    words.push(word);
    length += word.length + 1;
  }
  corpus = words.join(' ').slice(0, CORPUS_CHARS);
  return corpus;
}
