// The core's Store over a `js_shared_dict_zone ... type=number`: one zone shared by every worker
// process, surviving `nginx -s reload` (HUP). `incr` is atomic across workers, which keeps
// in-flight counts and rotation cursors exact.
//
// A full zone (measured in njs 0.8.9: `set` of a new key throws SharedMemoryError, `incr` of a new
// key throws Error "failed to increment value in shared dict"; updates of existing keys never
// allocate and keep working) must not fail requests: a write that does not fit is dropped and the
// request is served as if the key were absent. nginx itself logs every failed allocation at
// `crit` ("ngx_slab_alloc() failed: no memory in js shared zone"), so this adds no log of its own.
// Size: ~250 bytes per key; 4m holds ~16,000 keys (~19 per replica with `llm` scraping: the load, its time and the two prefix-cache counters).

import type { Store } from '../../shared/types';
import type { NumberDict } from './runtime';

export function createSharedDictStore(dict: NumberDict): Store {
  return {
    get: (key) => dict.get(key),
    set: (key, value) => {
      try {
        dict.set(key, value);
      } catch (e) {
        // Zone full: the value is not kept (see the header).
      }
    },
    incr: (key, delta, init) => {
      const start = init === undefined ? 0 : init;
      try {
        return dict.incr(key, delta, start);
      } catch (e) {
        // Only a new key can fail: report the value it would have had.
        return start + delta;
      }
    },
    delete: (key) => {
      dict.delete(key);
    },
  };
}
