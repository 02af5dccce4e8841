// njs entry for the core benchmark: njs loads only a default export.
import { runStrategy, STRATEGIES } from './core-cases';

export default { runStrategy, STRATEGIES };
