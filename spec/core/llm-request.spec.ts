import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countChatTokens, countTextTokens } from '../../testbed/emulator/tokens';
import type { ChatMessage } from '../../testbed/emulator/tokens';
import {
  CHARS_PER_TOKEN,
  estimateChatTokens,
  estimateTextTokens,
  readLlmRequest,
  TOKENS_PER_MESSAGE,
} from '../../shared/llm-request';
import type { LlmRequest } from '../../shared/llm-request';

const NUL = '\u0000';

/** The request a body yields, failing the test when it yields a reason instead. */
function read(body: unknown): LlmRequest {
  const parsed = readLlmRequest(body);
  if (!parsed.ok) throw new Error(`expected a request, got ${parsed.reason}: ${parsed.message}`);
  return parsed.request;
}

describe('chat requests', () => {
  it.each<[string, unknown[], Partial<LlmRequest>]>([
    [
      'string content',
      [{ role: 'user', content: 'Hello, world!' }],
      { promptTokens: 4 + 4, promptKey: `${NUL}user${NUL}Hello, world!`, messages: 1 },
    ],
    [
      'multi-part content: text parts concatenate, image parts count nothing',
      [{ role: 'user', content: [{ type: 'text', text: 'abcd' }, { type: 'image_url', image_url: { url: 'http://x/y.png' } }, { type: 'text', text: 'ef' }] }],
      { promptTokens: 4 + 2, promptKey: `${NUL}user${NUL}abcdef`, messages: 1 },
    ],
    [
      'null content (a tool-call message)',
      [{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }],
      { promptTokens: 4, promptKey: `${NUL}assistant${NUL}`, messages: 1 },
    ],
    [
      'absent content',
      [{ role: 'assistant' }],
      { promptTokens: 4, promptKey: `${NUL}assistant${NUL}`, messages: 1 },
    ],
    [
      'system + user + assistant turns',
      [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello there' },
      ],
      { promptTokens: (4 + 3) + (4 + 1) + (4 + 3), promptKey: `${NUL}system${NUL}Be brief.${NUL}user${NUL}Hi${NUL}assistant${NUL}Hello there`, messages: 3 },
    ],
    [
      'non-object messages are skipped, a non-string role reads as empty',
      [null, 'hi', 7, ['x'], { role: 5, content: 'abcde' }],
      { promptTokens: 4 + 2, promptKey: `${NUL}${NUL}abcde`, messages: 1 },
    ],
    [
      'content of another type, and parts without string text, count nothing',
      [{ role: 'user', content: 42 }, { role: 'user', content: [null, 'raw', { text: 3 }, { type: 'text' }] }],
      { promptTokens: 8, promptKey: `${NUL}user${NUL}${NUL}user${NUL}`, messages: 2 },
    ],
    [
      'an empty conversation still costs one token',
      [],
      { promptTokens: 1, promptKey: '', messages: 0 },
    ],
  ])('%s', (_what, messages, expected) => {
    const request = read({ model: 'm', messages });
    expect(request).toMatchObject({ kind: 'chat', ...expected });
    expect(estimateChatTokens(messages)).toBe(expected.promptTokens);
  });

  it('is chat when messages is an array, even with a prompt too', () => {
    expect(read({ messages: [{ role: 'user', content: 'x' }], prompt: 'a longer prompt' })).toMatchObject({ kind: 'chat', promptTokens: 5, messages: 1 });
  });

  it('counts multi-byte text in UTF-16 code units', () => {
    // '😀' is two code units, 'é' one: 2 + 2 + 1 = 5 units → 2 tokens.
    expect(read({ messages: [{ role: 'user', content: '😀😀é' }] }).promptTokens).toBe(4 + 2);
  });
});

describe('completion requests', () => {
  it.each<[string, unknown, number, string]>([
    ['a string', 'Once upon a time', 4, 'Once upon a time'],
    ['a one-element string array', ['abcdefghi'], 3, 'abcdefghi'],
    ['a batch of strings: each rounds up on its own, keys join with ""', ['abcde', 'fg'], 2 + 1, 'abcdefg'],
    ['a token array', [101, 7592, 2088, 102], 4, '101,7592,2088,102'],
    ['a batch of token arrays', [[1, 2, 3], [4, 5]], 5, '1,2,3;4,5'],
    ['an empty string', '', 1, ''],
    ['an empty array', [], 1, ''],
    ['a batch of empty token arrays', [[], []], 1, ';'],
  ])('%s', (_what, prompt, promptTokens, promptKey) => {
    expect(read({ model: 'm', prompt })).toEqual({
      kind: 'completion',
      model: 'm',
      stream: false,
      maxTokens: null,
      user: null,
      promptTokens,
      promptKey,
      messages: 0,
    });
  });
});

describe('request fields', () => {
  const chat = { messages: [{ role: 'user', content: 'hi' }] };

  it.each<[string, Record<string, unknown>, number | null]>([
    ['max_tokens', { max_tokens: 256 }, 256],
    ['max_completion_tokens', { max_completion_tokens: 64 }, 64],
    ['max_completion_tokens over max_tokens', { max_completion_tokens: 64, max_tokens: 256 }, 64],
    ['max_tokens when max_completion_tokens is invalid', { max_completion_tokens: 0, max_tokens: 256 }, 256],
    ['absent', {}, null],
    ['null', { max_tokens: null }, null],
    ['zero', { max_tokens: 0 }, null],
    ['negative', { max_tokens: -5 }, null],
    ['fractional', { max_tokens: 1.5 }, null],
    ['a numeric string', { max_tokens: '100' }, null],
    ['infinite', { max_tokens: Infinity }, null],
    ['NaN', { max_tokens: NaN }, null],
    ['boolean', { max_tokens: true }, null],
  ])('maxTokens: %s', (_what, fields, expected) => {
    expect(read({ ...chat, ...fields }).maxTokens).toBe(expected);
    expect(read({ prompt: 'p', ...fields }).maxTokens).toBe(expected);
  });

  it.each<[unknown, boolean]>([
    [true, true],
    [false, false],
    ['true', false],
    [1, false],
    [undefined, false],
    [null, false],
  ])('stream %j → %j (only boolean true counts)', (stream, expected) => {
    expect(read({ ...chat, stream }).stream).toBe(expected);
  });

  it.each<[string, unknown, string | null]>([
    ['a name', 'llama-3-8b', 'llama-3-8b'],
    ['absent', undefined, null],
    ['empty', '', null],
    ['not a string', 42, null],
  ])('model and user: %s', (_what, value, expected) => {
    const request = read({ ...chat, model: value, user: value });
    expect(request.model).toBe(expected);
    expect(request.user).toBe(expected);
  });
});

describe('bodies that are not requests', () => {
  it.each<[unknown]>([[null], [[]], [[{ role: 'user', content: 'x' }]], ['x'], [3], [true], [undefined]])('%j is not-object', (body) => {
    expect(readLlmRequest(body)).toEqual({ ok: false, reason: 'not-object', message: 'body is not a JSON object' });
  });

  it.each<[string, Record<string, unknown>]>([
    ['an empty object', {}],
    ['messages that is not an array', { messages: 'hi' }],
    ['null prompt', { prompt: null }],
    ['a prompt number', { prompt: 5 }],
    ['a prompt object', { prompt: { text: 'x' } }],
    ['a prompt mixing strings and numbers', { prompt: ['a', 1] }],
    ['a batch mixing token arrays and strings', { prompt: [[1, 2], 'a'] }],
    ['token arrays holding strings', { prompt: [['1']] }],
  ])('%s is no-prompt', (_what, body) => {
    const parsed = readLlmRequest(body);
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.reason).toBe('no-prompt');
    expect(parsed.message).not.toContain('\n');
  });

  it('says which part is missing', () => {
    expect(readLlmRequest({ model: 'm' })).toEqual({
      ok: false,
      reason: 'no-prompt',
      message: 'body has neither messages (chat) nor prompt (completion)',
    });
    expect(readLlmRequest({ prompt: 5 })).toMatchObject({ message: expect.stringContaining('prompt is not') });
  });
});

describe('the token rule', () => {
  it('matches the constants', () => {
    expect(CHARS_PER_TOKEN).toBe(4);
    expect(TOKENS_PER_MESSAGE).toBe(4);
    expect(estimateTextTokens('')).toBe(1);
    expect(estimateTextTokens('abcd')).toBe(1);
    expect(estimateTextTokens('abcde')).toBe(2);
    expect(estimateChatTokens([])).toBe(1);
    expect(estimateChatTokens([null, 'x'])).toBe(1);
  });

  // size 'large' so texts reach every remainder mod 4 and lengths well past a few characters.
  const text = fc.oneof(fc.string({ maxLength: 60, size: 'large' }), fc.string({ unit: 'binary', maxLength: 60, size: 'large' }));
  const part = fc.oneof(
    fc.record({ type: fc.constant('text'), text }),
    fc.record({ type: fc.constant('image_url'), image_url: fc.record({ url: fc.webUrl() }) }),
    fc.record({ type: fc.constant('text') }),
    fc.constant(null),
  );
  const content = fc.oneof(text, fc.constant(null), fc.constant(undefined), fc.array(part, { maxLength: 4 }));
  const message = fc.record(
    { role: fc.constantFrom('system', 'user', 'assistant', 'tool', ''), content },
    { requiredKeys: ['role'] },
  );

  it('chat estimate equals the emulator\'s countChatTokens', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 8 }), (messages) => {
        const expected = countChatTokens(messages as ChatMessage[]);
        expect(estimateChatTokens(messages)).toBe(expected);
        expect(read({ messages }).promptTokens).toBe(expected);
      }),
    );
  });

  it('text estimate equals the emulator\'s countTextTokens', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 400, size: 'large' }), (prompt) => {
        const expected = countTextTokens(prompt);
        expect(estimateTextTokens(prompt)).toBe(expected);
        expect(read({ prompt }).promptTokens).toBe(expected);
        expect(read({ prompt: [prompt] }).promptTokens).toBe(expected);
      }),
    );
  });

  it('appending a message makes the old promptKey a strict prefix of the new one', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 6 }), message, (messages, next) => {
        const before = read({ messages }).promptKey;
        const after = read({ messages: messages.concat([next]) }).promptKey;
        expect(after.length).toBeGreaterThan(before.length);
        expect(after.startsWith(before)).toBe(true);
      }),
    );
  });
});

describe('any input', () => {
  function checkShape(body: unknown): void {
    const parsed = readLlmRequest(body);
    if (parsed.ok) {
      const request = parsed.request;
      expect(['chat', 'completion']).toContain(request.kind);
      expect(Number.isInteger(request.promptTokens) && request.promptTokens >= 1).toBe(true);
      expect(typeof request.promptKey).toBe('string');
      expect(typeof request.stream).toBe('boolean');
      expect(request.maxTokens === null || (Number.isInteger(request.maxTokens) && request.maxTokens >= 1)).toBe(true);
      expect(request.model === null || (typeof request.model === 'string' && request.model !== '')).toBe(true);
      expect(request.user === null || (typeof request.user === 'string' && request.user !== '')).toBe(true);
      expect(request.messages === 0 || request.kind === 'chat').toBe(true);
    } else {
      expect(['not-object', 'no-prompt']).toContain(parsed.reason);
      expect(parsed.message).toMatch(/^[^\n]+$/);
    }
  }

  const anything = fc.anything({ withNullPrototype: true, withObjectString: true, withSparseArray: true, withBoxedValues: true });

  it('returns a well-formed result for any value', () => {
    fc.assert(fc.property(anything, checkShape), { numRuns: 500 });
  });

  it('returns a well-formed result for any value in any request field', () => {
    const body = fc.record(
      {
        messages: fc.oneof(anything, fc.array(fc.record({ role: anything, content: anything }, { requiredKeys: [] }))),
        prompt: fc.oneof(anything, fc.array(anything), fc.array(fc.array(anything))),
        model: anything,
        user: anything,
        stream: anything,
        max_tokens: anything,
        max_completion_tokens: anything,
      },
      { requiredKeys: [] },
    );
    fc.assert(fc.property(body, checkShape), { numRuns: 500 });
  });
});
