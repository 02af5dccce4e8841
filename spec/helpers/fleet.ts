// Bookkeeping shared by the real-nginx specs: the balancers a test started, stopped after it
// with their module errors collected (a js exception in the error log fails the test), and the
// replica list for a set of backends.
import type { Backend } from './backends';
import { startBalancer } from './nginx-balancer';
import type { Balancer, BalancerStartOptions } from './nginx-balancer';

export interface Fleet {
  /** Starts a balancer that `stopAll` will stop. */
  start(config: Record<string, unknown>, options?: BalancerStartOptions): Promise<Balancer>;
  /** Stops the most recent balancer now, keeping its module errors for `stopAll`. */
  stopLast(): Promise<void>;
  /** Stops every balancer still running; returns all module errors seen (expect them to be []). */
  stopAll(): Promise<string[]>;
}

export function createFleet(label: string): Fleet {
  const running: Balancer[] = [];
  const errors: string[] = [];
  return {
    async start(config, options = {}) {
      const b = await startBalancer(config, label, options);
      running.push(b);
      return b;
    },
    async stopLast() {
      const lb = running.pop() as Balancer;
      errors.push(...lb.moduleErrors());
      await lb.stop();
    },
    async stopAll() {
      while (running.length > 0) {
        const lb = running.pop() as Balancer;
        errors.push(...lb.moduleErrors());
        await lb.stop();
      }
      return errors.splice(0);
    },
  };
}

/** One replica per backend, named after it, with optional weights. */
export function replicasOf(list: Backend[], weights?: number[]) {
  return list.map((b, i) => ({ address: b.address, id: b.name, weight: weights ? weights[i] : 1 }));
}
