"""Reads a tuneserve job's MLflow run back through MLflow's own Python client,
for the integration tests; prints one JSON object.

    python mlflow_read.py TRACKING_URI EXPERIMENT JOB_ID

{"runs": [run ids tagged with the job], "status", "params", "tags",
 "metrics": {key: [[step, value], ...]}, "artifacts": [paths],
 "metrics_json": the metrics.json artifact (or null), "card": bool}
of the job's only (or first) run; {"runs": []} when there is none.
"""

import json
import sys
import tempfile

from mlflow.tracking import MlflowClient

KEYS = ["train_loss", "learning_rate", "grad_norm", "eval_loss", "eval_accuracy", "eval_macro_f1"]


def main():
    uri, experiment, job = sys.argv[1:4]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        print(json.dumps({"runs": []}))
        return
    runs = client.search_runs([exp.experiment_id], f"tags.`tuneserve.job_id` = '{job}'")
    out = {"runs": [r.info.run_id for r in runs]}
    if runs:
        run = runs[0]
        out["status"] = run.info.status
        out["run_name"] = run.info.run_name
        out["params"] = run.data.params
        out["tags"] = run.data.tags
        out["metrics"] = {
            k: [[m.step, m.value] for m in sorted(client.get_metric_history(run.info.run_id, k),
                                                   key=lambda m: (m.step, m.timestamp))]
            for k in KEYS
        }
        out["artifacts"] = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        out["metrics_json"] = None
        out["card"] = False
        with tempfile.TemporaryDirectory() as d:
            if "metrics.json" in out["artifacts"]:
                path = client.download_artifacts(run.info.run_id, "metrics.json", d)
                with open(path) as f:
                    out["metrics_json"] = json.load(f)
            if "README.md" in out["artifacts"]:
                path = client.download_artifacts(run.info.run_id, "README.md", d)
                with open(path) as f:
                    out["card"] = len(f.read()) > 0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
