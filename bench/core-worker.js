// One strategy's Node measurements in a fresh V8 isolate (bench/core.js starts one per strategy).
import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';

const cases = await import(workerData.module);
const now = () => performance.now();
// A short warm-up per size lets V8 optimise before the measured rounds.
cases.runStrategy(workerData.strategy, () => 2000, now);
parentPort.postMessage(cases.runStrategy(workerData.strategy, (n) => workerData.iterations[n], now));
