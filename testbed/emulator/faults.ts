// Fault injection for an emulated replica: what can be switched on, how it is written (admin JSON,
// CLI flag), and how a change is validated. What each fault does is implemented in server.ts
// (crash, unhealthy, errorRate) and model.ts (hang stalls the engine, slowdown lengthens steps).

export interface Faults {
  /** Stop listening and destroy open connections (connection refused); false listens again on the same port. */
  crash: boolean;
  /**
   * The engine freezes (a hung GPU): requests are accepted and queued, in-flight ones stop
   * mid-answer, nothing more is generated until cleared. The API server stays up, as vLLM's does
   * when its engine is stuck: /health, /metrics and /admin still answer.
   */
  hang: boolean;
  /** GET /health answers 503; inference is unaffected (lets active health checks be tested alone). */
  unhealthy: boolean;
  /** Probability 0..1 that an inference request is answered 500 with an OpenAI-style error. */
  errorRate: number;
  /** Multiplies the duration of every engine step (> 0; 1 = none; 3 = a GPU three times slower). */
  slowdown: number;
}

export const NO_FAULTS: Readonly<Faults> = { crash: false, hang: false, unhealthy: false, errorRate: 0, slowdown: 1 };

const BOOLEAN_FAULTS = ['crash', 'hang', 'unhealthy'] as const;
const FAULT_NAMES: readonly string[] = Object.keys(NO_FAULTS);

export type FaultsPatch = Partial<Faults>;

export type ParseResult = { ok: true; patch: FaultsPatch } | { ok: false; error: string };

function checkNumber(name: 'errorRate' | 'slowdown', value: number): string | null {
  if (typeof value !== 'number' || !Number.isFinite(value)) return `${name} must be a finite number`;
  if (name === 'errorRate' && (value < 0 || value > 1)) return 'errorRate must be between 0 and 1';
  if (name === 'slowdown' && !(value > 0)) return 'slowdown must be > 0';
  return null;
}

/** A patch from JSON (POST /admin/faults): only the given fields change. */
export function parseFaultsPatch(value: unknown): ParseResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { ok: false, error: 'expected a JSON object' };
  const patch: FaultsPatch = {};
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    if (!FAULT_NAMES.includes(key)) return { ok: false, error: `unknown fault '${key}' (known: ${FAULT_NAMES.join(', ')})` };
    if ((BOOLEAN_FAULTS as readonly string[]).includes(key)) {
      if (typeof field !== 'boolean') return { ok: false, error: `${key} must be true or false` };
      patch[key as (typeof BOOLEAN_FAULTS)[number]] = field;
    } else {
      const error = checkNumber(key as 'errorRate' | 'slowdown', field as number);
      if (error !== null) return { ok: false, error };
      patch[key as 'errorRate' | 'slowdown'] = field as number;
    }
  }
  return { ok: true, patch };
}

/**
 * A patch from the CLI's text form: comma-separated settings, `name=value` or a bare boolean name
 * (`hang` means hang=true). Example: "slowdown=3,errorRate=0.1".
 */
export function parseFaultsText(text: string): ParseResult {
  const object: Record<string, unknown> = {};
  for (const setting of text.split(',')) {
    const trimmed = setting.trim();
    if (trimmed === '') continue;
    const equals = trimmed.indexOf('=');
    const key = equals < 0 ? trimmed : trimmed.slice(0, equals).trim();
    const raw = equals < 0 ? 'true' : trimmed.slice(equals + 1).trim();
    if ((BOOLEAN_FAULTS as readonly string[]).includes(key)) {
      if (raw !== 'true' && raw !== 'false') return { ok: false, error: `${key} must be true or false, got '${raw}'` };
      object[key] = raw === 'true';
    } else {
      object[key] = raw === '' ? NaN : Number(raw);
    }
  }
  return parseFaultsPatch(object);
}

export function applyFaults(current: Faults, patch: FaultsPatch): Faults {
  return Object.assign({}, current, patch);
}
