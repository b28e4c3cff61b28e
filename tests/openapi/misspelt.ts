// Must NOT compile: `acuracy` is not a field of an evaluation.
import type { components } from "./schema";

export function wrong(metrics: components["schemas"]["JobMetrics"]): number {
  return metrics.eval[0].acuracy;
}
