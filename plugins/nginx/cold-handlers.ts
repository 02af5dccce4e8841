// What the cold part of the njs module (cold.ts) hands to index.ts: its handlers, as nginx calls them.

import type { NjsRequest } from './runtime';

export interface ColdHandlers {
  status(r: NjsRequest): void;
  metrics(r: NjsRequest): void;
  wait(r: NjsRequest): void;
  healthCheck(session?: unknown): Promise<void>;
  healthReport(session?: unknown): Promise<void>;
  scrapeMetrics(session?: unknown): Promise<void>;
  discoverModels(session?: unknown): Promise<void>;
  syncPeers(session?: unknown): Promise<void>;
  pickForTest(preloadedJson: string, requestJson: string): string;
}
