// Moved to bench/lib (npm start and the benchmarks run nginx too); specs import it from here.
export * from '../../bench/lib/nginx-process';
