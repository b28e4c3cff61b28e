// A small client written against the types openapi-typescript generates from
// openapi.yaml (tests/it/openapi_tools.rs compiles it under `tsc --strict`):
// every field it reads must exist with the type it expects.
import type { components } from "./schema";

type JobMetrics = components["schemas"]["JobMetrics"];
type Job = components["schemas"]["Job"];
type JobEvent = components["schemas"]["JobEvent"];

export function bestAccuracy(metrics: JobMetrics): number {
  const accuracies: number[] = metrics.eval.map((e) => e.accuracy);
  const first: number = metrics.eval[0].accuracy;
  const f1: number = metrics.eval[0].macro_f1;
  const confusion: number[][] = metrics.eval[0].confusion;
  const loss: number = metrics.train[0].loss;
  return Math.max(first, f1, loss, confusion[0][0], ...accuracies);
}

export function summary(job: Job): string {
  const status: "queued" | "running" | "succeeded" | "failed" | "cancelled" = job.status;
  const accuracy: number | undefined = job.latest_metrics?.eval?.accuracy;
  const epochs: number | undefined = job.hyperparameters.epochs;
  return `${job.id} ${status} ${accuracy ?? "-"} ${epochs ?? "-"}`;
}

export function isError(event: JobEvent): boolean {
  return event.level === "error" && event.kind === "error";
}

// An entry's `data` is typed by its `kind`: narrowed by the kind, an
// evaluation's accuracy is a number and a failure's next status an enum.
export function eventLine(event: JobEvent): string {
  switch (event.kind) {
    case "eval": {
      const accuracy: number = event.data.accuracy;
      const seconds: number = event.data.seconds;
      return `eval ${accuracy} in ${seconds} s`;
    }
    case "step": {
      const loss: number = event.data.loss;
      return `step ${event.data.step}: ${loss}`;
    }
    case "error": {
      const next: "queued" | "running" | "succeeded" | "failed" | "cancelled" =
        event.data.next_status;
      const retry: number | undefined = event.data.retry_in_ms;
      return `${next} ${retry ?? "-"}`;
    }
    case "succeeded": {
      const promoted: boolean = event.data.promoted;
      return `${event.data.model} ${promoted}`;
    }
    case "cancelled": {
      const none: null = event.data;
      return `cancelled ${none}`;
    }
    default:
      return event.message;
  }
}
