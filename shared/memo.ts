// A bounded memo for string-keyed pure computations (replica keys, id hashes, WRR cycles).
// Bounded by starting over when full: simple, O(1), and replica sets rarely churn.
// Under Node (Kong) a memo lives as long as the process; under njs, for one request.

export function memoise<T>(compute: (key: string) => T, maxEntries: number): (key: string) => T {
  let known: Record<string, T> = Object.create(null);
  let entries = 0;
  return (key) => {
    const hit = known[key];
    if (hit !== undefined) return hit;
    if (entries >= maxEntries) {
      known = Object.create(null);
      entries = 0;
    }
    const value = compute(key);
    known[key] = value;
    entries++;
    return value;
  };
}
