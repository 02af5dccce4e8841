// Kong's side of the plugin-server protocol lives in bench/lib/kong-harness.ts (the shootout's Kong
// gateway uses it too); the specs import it from here.
export * from '../../bench/lib/kong-harness';
