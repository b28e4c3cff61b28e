"""Drives a live tuneserve through the Python client openapi-python-client
generated from openapi.yaml: upload a dataset (multipart), submit a job,
wait for it to succeed, read its log typed by kind, classify with its model.

Usage: drive_client.py CLIENT_PARENT BASE_URL API_KEY BASE_MODEL DATASET
(CLIENT_PARENT holds the generated package `tuneserve_client`). Prints one
JSON line on success; raises on anything unexpected.
"""

import json
import math
import sys
import time

client_parent, base_url, api_key, base_model, dataset_path = sys.argv[1:6]
sys.path.insert(0, client_parent)

from tuneserve_client import AuthenticatedClient, Client  # noqa: E402
from tuneserve_client.api.datasets import upload_dataset  # noqa: E402
from tuneserve_client.api.jobs import create_job, get_job, get_job_events  # noqa: E402
from tuneserve_client.api.models import classify  # noqa: E402
from tuneserve_client.models import (  # noqa: E402
    ClassifyRequest,
    ClassifyResponse,
    CreateJob,
    Dataset,
    ErrorBody,
    Hyperparameters,
    Job,
    JobEventEval,
    JobEventList,
    JobEventStep,
    JobEventSucceeded,
    UploadForm,
)
from tuneserve_client.types import File  # noqa: E402

client = AuthenticatedClient(base_url=base_url, token=api_key, raise_on_unexpected_status=True)

# Without the key: a 401 the client reads as the documented error body.
anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
refused = get_job.sync_detailed(id="job-0", client=anonymous)
assert refused.status_code == 401 and isinstance(refused.parsed, ErrorBody), refused
assert refused.parsed.error.code == "unauthorized", refused.parsed

with open(dataset_path, "rb") as f:
    form = UploadForm(file=File(payload=f, file_name="tiny.jsonl", mime_type="application/x-ndjson"))
    dataset = upload_dataset.sync(client=client, body=form, name="client-test")
assert isinstance(dataset, Dataset), dataset
assert dataset.rows == 24, dataset

hyperparameters = Hyperparameters(epochs=1, batch_size=4, logging_steps=1, learning_rate=1e-3)
request = CreateJob(
    base_model=base_model,
    train_dataset=dataset.id,
    eval_dataset=dataset.id,
    hyperparameters=hyperparameters,
)
job = create_job.sync(client=client, body=request)
assert isinstance(job, Job) and job.status == "queued", job

deadline = time.monotonic() + 180
while job.status not in ("succeeded", "failed", "cancelled"):
    assert time.monotonic() < deadline, f"job still {job.status} after 180 s"
    time.sleep(0.2)
    job = get_job.sync(id=job.id, client=client)
    assert isinstance(job, Job), job
assert job.status == "succeeded", (job.status, job.error)

# The log, each entry parsed by its kind into the class of its shape.
events = get_job_events.sync(id=job.id, client=client, limit=1000)
assert isinstance(events, JobEventList), events
by_kind = {}
for e in events.data:
    by_kind.setdefault(e.kind, []).append(e)
assert all(isinstance(e, JobEventStep) and e.data.loss > 0 for e in by_kind["step"]), by_kind
evals = by_kind["eval"]
assert all(isinstance(e, JobEventEval) for e in evals), evals
assert all(0 <= e.data.accuracy <= 1 and e.data.seconds >= 0 for e in evals), evals
[done] = by_kind["succeeded"]
assert isinstance(done, JobEventSucceeded) and done.data.model == job.model, done

texts = ["I love this, it is great", "the bus comes every hour", "worst day ever"]
answer = classify.sync(client=client, body=ClassifyRequest(inputs=texts, model=job.model))
assert isinstance(answer, ClassifyResponse), answer
assert answer.model == job.model and len(answer.predictions) == len(texts), answer
labels = {"negative", "neutral", "positive"}
for p in answer.predictions:
    scores = p.scores.to_dict()
    assert set(scores) == labels and p.label in labels, p
    assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-4), scores
    assert math.isclose(scores[p.label], p.score, abs_tol=1e-6), p

print(json.dumps({"dataset": dataset.id, "job": job.id, "model": job.model,
                  "event_kinds": sorted(by_kind),
                  "labels": [p.label for p in answer.predictions]}))
