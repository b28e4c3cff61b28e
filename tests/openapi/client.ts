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
