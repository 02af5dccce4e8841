// The GPU's LoRA slots of one emulated replica: which adapters are resident, least recently used
// first, and what it cost to put them there. Pure bookkeeping; model.ts decides when to call it
// and turns `loaded` into step time.
//
// vLLM keeps active adapters in an LRU (LRUCacheLoRAModelManager, vllm/lora/model_manager.py) of
// max_loras GPU slots. Every step the worker activates the batch's adapters
// (WorkerLoRAManager.set_active_adapters): one already resident is touched, a missing one is loaded
// into a free slot or into the slot of the least recently used adapter. The scheduler never puts
// more than max_loras distinct adapters in a batch, and the batch's own adapters are touched first,
// so the adapter evicted is always one no running request uses.
//
// One tier stands for vLLM's two: adapters also sit in a CPU cache of max_cpu_loras, whose
// default is max_loras, so with defaults an adapter evicted from the GPU is gone from the CPU
// cache too and comes back from disk; loraLoadMs (model.ts) is that load.

export interface LoraActivation {
  /** Adapters that were not resident and were loaded for this batch, in batch order. */
  loaded: string[];
  /** Adapters evicted to make room, oldest first. */
  evicted: string[];
}

export interface LoraSlots {
  readonly maxLoras: number;
  /** Makes every adapter of the batch resident. Throws if the batch has more than maxLoras. */
  activate(batchAdapters: readonly string[]): LoraActivation;
  isResident(adapter: string): boolean;
  /** Resident adapters, least recently used first. */
  resident(): string[];
  loads(): number;
  evictions(): number;
}

export function createLoraSlots(maxLoras: number): LoraSlots {
  if (!(Number.isInteger(maxLoras) && maxLoras >= 1)) throw new Error(`maxLoras must be an integer >= 1, got ${maxLoras}`);
  // A Map iterates in insertion order: delete + set moves a key to the most recently used end.
  const lru = new Map<string, true>();
  let loads = 0;
  let evictions = 0;

  return {
    maxLoras,
    activate(batchAdapters) {
      const batch = new Set(batchAdapters);
      if (batch.size > maxLoras) throw new Error(`a batch of ${batch.size} adapters exceeds maxLoras ${maxLoras}`);
      // Touch the resident ones first so that none of them is the LRU victim below.
      for (const adapter of batch) {
        if (lru.delete(adapter)) lru.set(adapter, true);
      }
      const loaded: string[] = [];
      const evicted: string[] = [];
      for (const adapter of batch) {
        if (lru.has(adapter)) continue;
        if (lru.size >= maxLoras) {
          for (const candidate of lru.keys()) {
            if (batch.has(candidate)) continue;
            lru.delete(candidate);
            evicted.push(candidate);
            evictions++;
            break;
          }
        }
        lru.set(adapter, true);
        loaded.push(adapter);
        loads++;
      }
      return { loaded, evicted };
    },
    isResident: (adapter) => lru.has(adapter),
    resident: () => Array.from(lru.keys()),
    loads: () => loads,
    evictions: () => evictions,
  };
}
