// Token counting and pseudo-tokenisation for the emulated replicas.
//
// The emulator has no real tokenizer (no model weights, and a BPE vocabulary would cost more CPU
// than the rest of the emulator on a 2-core machine). It needs two things from tokens:
//   1. a COUNT, for usage, KV-cache sizing and prefill time;
//   2. token IDENTITIES, so that the prefix cache sees two prompts with the same beginning as
//      sharing the same leading tokens, and prompts that differ early as different.
//
// The rule, deterministic and documented so a load generator can predict it:
//   - text: one token per 4 characters, ceil(chars / 4), where a character is a UTF-16 code unit
//     (String.length). Token k is the slice text[4k .. 4k+4), identified by a 32-bit hash of it.
//   - chat: every message adds 4 tokens for its role and formatting (identified by the role,
//     so two "user" messages start alike), followed by its content's text tokens. Content is a
//     string, null, or an array of parts whose `text` fields are concatenated (other parts such as
//     images count nothing). Messages are tokenised one after another, so appending a message to a
//     conversation keeps every earlier token — the property multi-turn prefix caching relies on.
//   - minimum 1: an empty prompt still costs one token (vLLM always has at least a BOS token).
//
// Output tokens are counted differently: the emulator generates one filler word per output token
// (see content.ts), so completion_tokens is the number of words produced.

import { hashString } from '../../shared/hash';

/** OpenAI's rule of thumb for English text: one token is about 4 characters. */
export const CHARS_PER_TOKEN = 4;

/**
 * Role and formatting tokens per chat message. OpenAI's cookbook counts 3–4 per message for its
 * chat formats (start marker, role, separator, end marker); we take 4, one per marker.
 */
export const TOKENS_PER_MESSAGE = 4;

/** An empty prompt still occupies one position (a BOS token in a real model). */
export const MIN_PROMPT_TOKENS = 1;

/** The id of the lone token of an empty prompt. Any fixed value works; this one spells "BOS". */
const EMPTY_PROMPT_TOKEN = 0x00b05;

/** A chat message as the emulator reads it; other OpenAI fields (name, tool_calls) cost nothing. */
export interface ChatMessage {
  role: string;
  content?: string | null | ReadonlyArray<{ type?: string; text?: string }>;
}

/** The text of a message's content: a string, or the `text` of every part, concatenated. */
export function messageText(content: ChatMessage['content']): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  let text = '';
  for (const part of content) {
    if (part !== null && typeof part === 'object' && typeof part.text === 'string') text += part.text;
  }
  return text;
}

/** Number of tokens text alone contributes (no minimum): ceil(length / 4). */
export function textTokenCount(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

function pushTextTokenIds(text: string, ids: number[]): void {
  for (let start = 0; start < text.length; start += CHARS_PER_TOKEN) {
    ids.push(hashString(text.slice(start, start + CHARS_PER_TOKEN)));
  }
}

function withMinimum(ids: number[]): number[] {
  if (ids.length < MIN_PROMPT_TOKENS) ids.push(EMPTY_PROMPT_TOKEN);
  return ids;
}

/** Token ids of a plain-text prompt (/v1/completions). */
export function textTokenIds(text: string): number[] {
  const ids: number[] = [];
  pushTextTokenIds(text, ids);
  return withMinimum(ids);
}

/** Token ids of a chat conversation (/v1/chat/completions). */
export function chatTokenIds(messages: readonly ChatMessage[]): number[] {
  const ids: number[] = [];
  for (const message of messages) {
    for (let k = 0; k < TOKENS_PER_MESSAGE; k++) ids.push(hashString('\u0000' + message.role + '\u0000' + k));
    pushTextTokenIds(messageText(message.content), ids);
  }
  return withMinimum(ids);
}

/** ceil(chars / 4), at least 1. */
export function countTextTokens(text: string): number {
  return Math.max(MIN_PROMPT_TOKENS, textTokenCount(text));
}

/** 4 per message plus each message's ceil(chars / 4), at least 1. */
export function countChatTokens(messages: readonly ChatMessage[]): number {
  let count = 0;
  for (const message of messages) count += TOKENS_PER_MESSAGE + textTokenCount(messageText(message.content));
  return Math.max(MIN_PROMPT_TOKENS, count);
}
