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

/**
 * Slots when a replica is given adapters but no maxLoras. vLLM's own default (--max-loras) is 1,
 * which runs one adapter per batch: requests for any second adapter queue behind the first, a
 * setting multi-LoRA deployments raise. 4 lets a batch mix a few adapters, so a replica sent six
 * adapters thrashes and one sent two does not; that contrast is what LoRA-aware routing exploits.
 */
export const DEFAULT_MAX_LORAS = 4;

/**
 * Time to load a missing adapter into a slot at real-GPU speed. Public measurements of loading one
 * small adapter (rank 8-16, tens of MB, from a warm disk cache) onto a GPU: 25-65 ms in PEFT
 * (huggingface/peft#981, per adapter, growing with the number loaded); 20 ms per layer copied one
 * by one, 0.5-1 s per adapter, in LoRAX before it batched the copies (predibase/lorax#433). 50 ms
 * sits in the first range: an adapter file in the page cache and vLLM's batched load. A cold
 * load from a network disk or the Hub takes seconds (vllm-project/vllm#5564 measured 8-28 s with
 * a regression); pass a larger loraLoadMs to study that.
 */
export const DEFAULT_LORA_LOAD_MS = 50;

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
