// Must NOT compile: `acuracy` is not a field of an evaluation, and a step
// entry's data has no accuracy.
import type { components } from "./schema";

export function wrong(metrics: components["schemas"]["JobMetrics"]): number {
  return metrics.eval[0].acuracy;
}

export function wrongKind(event: components["schemas"]["JobEvent"]): number {
  return event.kind === "step" ? event.data.accuracy : 0;
}
