// What an LLM-aware balancer needs to know about one OpenAI request, read from its parsed body.
//
// Reads a /v1/chat/completions body (`messages`) or a /v1/completions body (`prompt`) that the
// adapter has already parsed as JSON (the adapter also caps the body's size), and returns the kind,
// model, stream flag, requested output budget, end user, an estimate of the prompt's tokens, and the
// prompt as one canonical string for prefix hashing.
//
// Token estimate, without a tokenizer (a real BPE vocabulary per model would cost more than the
// balancing itself and would not be the same across the models behind one gateway):
//   - text: ceil(chars / 4), chars being UTF-16 code units (String.length): OpenAI's rule of thumb
//     that one token is about 4 characters of English text;
//   - chat: 4 tokens per message for its role and formatting markers, plus its content's text
//     estimate; content is a string, null (tool-call messages) or an array of parts whose string
//     `text` fields are concatenated (image and other parts count nothing);
//   - pre-tokenised prompts (arrays of token ids) count exactly;
//   - at least 1: an empty prompt still occupies a position (a BOS token in a real model).
// This is, on purpose, the same count the benchmark's replica emulator reports as prompt_tokens
// (testbed/emulator/tokens.ts), so the balancer's estimates and the benchmark's numbers line up.
//
// Never throws: every field is type-checked before it is used, and a body that is not a request
// yields a typed reason instead.

/** OpenAI's rule of thumb for English text: one token is about 4 characters. */
export const CHARS_PER_TOKEN = 4;

/**
 * Role and formatting tokens per chat message. OpenAI's cookbook counts 3–4 per message for its
 * chat formats (start marker, role, separator, end marker); we take 4, one per marker.
 */
export const TOKENS_PER_MESSAGE = 4;

/** An empty prompt still occupies one position (a BOS token in a real model). */
const MIN_PROMPT_TOKENS = 1;

/**
 * Separates the fields of the chat prompt key. NUL cannot be typed in a role and rarely appears in
 * text, so "user" + "ab" and "usera" + "b" give different keys.
 */
const KEY_SEPARATOR = '\u0000';

export interface LlmRequest {
  kind: 'chat' | 'completion';
  model: string | null;
  stream: boolean;
  /** max_completion_tokens (chat, newer OpenAI name) or max_tokens; a positive integer or null (absent, 0, negative, fractional, non-number). */
  maxTokens: number | null;
  user: string | null;
  /** Estimated prompt tokens (rule above), at least 1. */
  promptTokens: number;
  /**
   * The prompt as one canonical string for prefix hashing: for chat, every message contributes
   * '\u0000' + role + '\u0000' + its content text (concatenated in order), so appending a message keeps
   * the earlier key as a prefix; for completion, the prompt text itself (array of strings: joined with '').
   */
  promptKey: string;
  /** Number of chat messages (0 for completion). */
  messages: number;
}

export type LlmRequestReason = 'not-object' | 'no-prompt';

export type LlmParse = { ok: true; request: LlmRequest } | { ok: false; reason: LlmRequestReason; message: string };

/** A prompt read from either endpoint: its estimated tokens, its key, its message count. */
interface PromptSummary {
  tokens: number;
  key: string;
  messages: number;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function nonEmptyString(value: unknown): string | null {
  return typeof value === 'string' && value !== '' ? value : null;
}

/** A positive integer, or null for anything else (0, negative, fractional, infinite, non-number). */
function positiveInteger(value: unknown): number | null {
  if (typeof value !== 'number' || !isFinite(value) || value < 1 || Math.floor(value) !== value) return null;
  return value;
}

/** Tokens text alone contributes, without the minimum. */
function textTokenCount(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/**
 * A message's content as text: a string, '' for null/absent, or the string `text` of every part.
 * Parts are joined once, not appended one by one: njs copies a string on every `+=`, and a body
 * of 50,000 parts cost 45 s of one nginx worker that way (measured; the fuzz spec sends such bodies).
 */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const texts: string[] = [];
  for (let i = 0; i < content.length; i++) {
    const part: unknown = content[i];
    if (part === null || typeof part !== 'object') continue;
    const partText = (part as Record<string, unknown>).text;
    if (typeof partText === 'string') texts.push(partText);
  }
  return texts.length === 1 ? texts[0] : texts.join('');
}

/**
 * Walks the messages once; entries that are not objects are skipped and count nothing. The key's
 * pieces are joined once at the end (not `key +=` per message: quadratic in njs, 29 s for 35,000
 * messages, measured).
 */
function summariseChat(messages: unknown[]): PromptSummary {
  let tokens = 0;
  const pieces: string[] = [];
  let count = 0;
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i];
    if (!isRecord(message)) continue;
    const role = typeof message.role === 'string' ? message.role : '';
    const text = contentText(message.content);
    tokens += TOKENS_PER_MESSAGE + textTokenCount(text);
    pieces.push(KEY_SEPARATOR, role, KEY_SEPARATOR, text);
    count++;
  }
  return { tokens: Math.max(MIN_PROMPT_TOKENS, tokens), key: pieces.join(''), messages: count };
}

function everyElement(values: unknown[], test: (value: unknown) => boolean): boolean {
  for (let i = 0; i < values.length; i++) {
    if (!test(values[i])) return false;
  }
  return true;
}

function isString(value: unknown): boolean {
  return typeof value === 'string';
}

function isNumber(value: unknown): boolean {
  return typeof value === 'number';
}

function isTokenArray(value: unknown): boolean {
  return Array.isArray(value) && everyElement(value, isNumber);
}

/**
 * A completion prompt: a string, a batch of strings, one tokenised prompt, or a batch of tokenised
 * prompts; null when `prompt` is none of these. A batch costs the sum of its prompts.
 */
function summariseCompletion(prompt: unknown): PromptSummary | null {
  if (typeof prompt === 'string') return { tokens: estimateTextTokens(prompt), key: prompt, messages: 0 };
  if (!Array.isArray(prompt)) return null;
  let tokens = 0;
  let key: string;
  if (everyElement(prompt, isString)) {
    // Each prompt of a batch is tokenised on its own, so each rounds up on its own.
    for (let i = 0; i < prompt.length; i++) tokens += textTokenCount(prompt[i] as string);
    key = prompt.join('');
  } else if (everyElement(prompt, isNumber)) {
    tokens = prompt.length;
    key = prompt.join(',');
  } else if (everyElement(prompt, isTokenArray)) {
    const keys: string[] = [];
    for (let i = 0; i < prompt.length; i++) {
      const ids = prompt[i] as number[];
      tokens += ids.length;
      keys.push(ids.join(','));
    }
    key = keys.join(';');
  } else {
    return null;
  }
  return { tokens: Math.max(MIN_PROMPT_TOKENS, tokens), key: key, messages: 0 };
}

/**
 * The requested output budget: the first of max_completion_tokens (the newer OpenAI name, which
 * takes precedence) and max_tokens that is a positive integer.
 */
function readMaxTokens(body: Record<string, unknown>): number | null {
  const newer = positiveInteger(body.max_completion_tokens);
  return newer !== null ? newer : positiveInteger(body.max_tokens);
}

/** Reads an already-parsed OpenAI chat or completion request body. Never throws. */
export function readLlmRequest(body: unknown): LlmParse {
  if (!isRecord(body)) return { ok: false, reason: 'not-object', message: 'body is not a JSON object' };
  let kind: 'chat' | 'completion';
  let prompt: PromptSummary | null;
  if (Array.isArray(body.messages)) {
    kind = 'chat';
    prompt = summariseChat(body.messages);
  } else {
    kind = 'completion';
    prompt = summariseCompletion(body.prompt);
  }
  if (prompt === null) {
    const message = body.prompt === undefined || body.prompt === null
      ? 'body has neither messages (chat) nor prompt (completion)'
      : 'prompt is not a string, an array of strings, or an array (of arrays) of token ids';
    return { ok: false, reason: 'no-prompt', message: message };
  }
  return {
    ok: true,
    request: {
      kind: kind,
      model: nonEmptyString(body.model),
      stream: body.stream === true,
      maxTokens: readMaxTokens(body),
      user: nonEmptyString(body.user),
      promptTokens: prompt.tokens,
      promptKey: prompt.key,
      messages: prompt.messages,
    },
  };
}

/** ceil(length / 4) in UTF-16 code units, at least 1. */
export function estimateTextTokens(text: string): number {
  return Math.max(MIN_PROMPT_TOKENS, textTokenCount(text));
}

/** 4 per message plus ceil(chars / 4) of each message's content text, at least 1; non-objects count nothing. */
export function estimateChatTokens(messages: unknown[]): number {
  return summariseChat(messages).tokens;
}
