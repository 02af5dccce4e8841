import { describe, expect, it } from 'vitest';
import { splitAddress } from '../../shared/address';

describe('splitAddress', () => {
  it.each([
    ['127.0.0.1:9001', { host: '127.0.0.1', port: 9001 }],
    ['gpu-a.internal:8000', { host: 'gpu-a.internal', port: 8000 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['[2001:db8::7]:443', { host: '2001:db8::7', port: 443 }],
  ])('%s', (address, expected) => {
    expect(splitAddress(address)).toEqual(expected);
  });
});
