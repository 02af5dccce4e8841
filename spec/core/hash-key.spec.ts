import { describe, expect, it } from 'vitest';
import { bodyField, cookieValue, resolveHashKey } from '../../shared/hash-key';
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
});
