import { describe, expect, it } from 'vitest';
import { MAX_KEY_CHARS, bodyField, boundedKey, cookieValue, resolveHashKey } from '../../shared/hash-key';
import type { HashKeyConfig } from '../../shared/config/types';
import type { RequestView } from '../../shared/types';

const request: RequestView = {
  headers: { 'x-session-id': 'sess-1', cookie: 'theme=dark; llm_session=abc123 ; other=x', empty: '' },
  query: { session: 'q-9' },
  clientIp: '192.0.2.7',
  consumer: 'consumer-uuid-1',
  body: { user: 'alice', metadata: { session_id: 77, nested: { deep: 'yes' } }, list: ['x'], flag: true },
};

describe('hash key sources', () => {
  it.each<[HashKeyConfig, string | null]>([
    [{ source: 'header', name: 'X-Session-Id' }, 'sess-1'],
    [{ source: 'header', name: 'x-missing' }, null],
    [{ source: 'header', name: 'empty' }, null],
    [{ source: 'cookie', name: 'llm_session' }, 'abc123'],
    [{ source: 'cookie', name: 'nope' }, null],
    [{ source: 'query', name: 'session' }, 'q-9'],
    [{ source: 'consumer', name: null }, 'consumer-uuid-1'],
    [{ source: 'client-ip', name: null }, '192.0.2.7'],
    [{ source: 'body', name: 'user' }, 'alice'],
    [{ source: 'body', name: 'metadata.session_id' }, '77'],
    [{ source: 'body', name: 'metadata.nested.deep' }, 'yes'],
    [{ source: 'body', name: 'flag' }, null],
    [{ source: 'body', name: 'list.0' }, null],
    [{ source: 'body', name: 'user.name' }, null],
  ])('%j → %j', (source, expected) => {
    expect(resolveHashKey(source, request)).toBe(expected);
  });

  it('returns null when there is no source or the request lacks the part', () => {
    expect(resolveHashKey(null, request)).toBeNull();
    expect(resolveHashKey({ source: 'header', name: 'x' }, {})).toBeNull();
    expect(resolveHashKey({ source: 'body', name: 'user' }, { body: 'not json' })).toBeNull();
    expect(resolveHashKey({ source: 'consumer', name: null }, { consumer: null })).toBeNull();
  });

  it('parses cookies and body paths defensively', () => {
    expect(cookieValue(undefined, 'a')).toBeNull();
    expect(cookieValue('a=1;b', 'b')).toBeNull();
    expect(cookieValue('a=x=y', 'a')).toBe('x=y');
    expect(bodyField(null, 'a')).toBeNull();
    expect(bodyField({ a: Infinity }, 'a')).toBeNull();
  });

  it('bounds what is hashed: a key over MAX_KEY_CHARS keeps its two ends and its length', () => {
    const short = 'k'.repeat(MAX_KEY_CHARS);
    expect(resolveHashKey({ source: 'header', name: 'x-key' }, { headers: { 'x-key': short } })).toBe(short);
    const long = 'a'.repeat(600) + 'MIDDLE' + 'b'.repeat(600);
    const bounded = resolveHashKey({ source: 'body', name: 'user' }, { body: { user: long } }) as string;
    expect(bounded.length).toBeLessThanOrEqual(MAX_KEY_CHARS + 16);
    expect(bounded).toBe(boundedKey(long));
    expect(bounded.startsWith('a'.repeat(512))).toBe(true);
    expect(bounded.endsWith('b'.repeat(512))).toBe(true);
    // Distinct long keys stay distinct by their ends or their length (a JWT differs in its signature).
    expect(boundedKey('h'.repeat(2000) + 'sig1')).not.toBe(boundedKey('h'.repeat(2000) + 'sig2'));
    expect(boundedKey('h'.repeat(2000))).not.toBe(boundedKey('h'.repeat(2001)));
  });
});
