// Moved to testbed/lib (npm start and the benchmarks run nginx too); specs import it from here.
export * from '../../testbed/lib/nginx-process';
