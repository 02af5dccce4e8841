// 32-bit string hashing for sticky routing. FNV-1a over UTF-16 code units, finished with
// MurmurHash3's fmix32 so that similar keys ("user-1", "user-2") land far apart.
// Pure integer arithmetic with Math.imul: identical results under Node and njs.

const FNV_OFFSET = 0x811c9dc5; // FNV-1a 32-bit offset basis
const FNV_PRIME = 0x01000193; // FNV-1a 32-bit prime

/** MurmurHash3's 32-bit finaliser: full avalanche of every input bit. */
export function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Unsigned 32-bit hash of a string. */
export function hashString(text: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  return fmix32(h);
}

/**
 * Hash of the pair (a, b) of two 32-bit hashes. Used by rendezvous hashing to score a key against
 * a replica: the golden-ratio multiplier keeps (a, b) and (b, a) apart and fmix32 mixes the result.
 */
export function combineHashes(a: number, b: number): number {
  return fmix32((a ^ Math.imul(b, 0x9e3779b1)) + 0x7f4a7c15);
}

/** Maps a 32-bit hash to the open interval (0, 1), never exactly 0 or 1. */
export function unitInterval(hash: number): number {
  return ((hash >>> 0) + 0.5) / 4294967296;
}
