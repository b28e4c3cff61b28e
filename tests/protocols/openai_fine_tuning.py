"""Drives a whole fine-tuning job through the official `openai` SDK against a
live tuneserve (`base_url=URL/v1`): upload the files, submit, poll until the
job succeeds, read its events, checkpoints and the models list, cancel a
second job; then a bad file and bad hyperparameters, which must come back as
the SDK's errors with `param` set.

Usage: openai_fine_tuning.py BASE_URL API_KEY BASE_MODEL TRAIN_JSONL BAD_JSONL
Prints one JSON object summing up what the service answered; raises on
anything unexpected.
"""

import json
import sys
import time

import openai
from openai import OpenAI

base_url, api_key, base_model, train_path, bad_path = sys.argv[1:6]
client = OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
out = {"openai": openai.__version__}

with open(train_path, "rb") as f:
    training = client.files.create(file=f, purpose="fine-tune")
assert training.object == "file" and training.status == "processed", training
out["file"] = training.model_dump()
out["files_listed"] = [f.id for f in client.files.list()]

job = client.fine_tuning.jobs.create(
    model=base_model,
    training_file=training.id,
    validation_file=training.id,
    seed=7,
    suffix="sdk",
    metadata={"team": "protocols"},
    method={
        "type": "supervised",
        "supervised": {
            "hyperparameters": {
                "n_epochs": 1,
                "batch_size": 4,
                "learning_rate_multiplier": 20,
            }
        },
    },
    extra_body={"tuneserve": {"hyperparameters": {"logging_steps": 1}}},
)
out["created"] = job.model_dump()
deadline = time.time() + 180
while job.status not in ("succeeded", "failed", "cancelled"):
    assert time.time() < deadline, f"the job did not finish: {job}"
    time.sleep(0.2)
    job = client.fine_tuning.jobs.retrieve(job.id)
out["finished"] = job.model_dump()

events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
out["events"] = [e.model_dump() for e in events]
# Auto-paging with a small page walks the same events.
out["events_paged"] = [e.id for e in client.fine_tuning.jobs.list_events(job.id, limit=3)]
checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
out["checkpoints"] = [c.model_dump() for c in checkpoints]
out["models"] = [m.id for m in client.models.list()]
out["jobs_listed"] = [j.id for j in client.fine_tuning.jobs.list(limit=10)]

second = client.fine_tuning.jobs.create(model=base_model, training_file=training.id)
cancelled = client.fine_tuning.jobs.cancel(second.id)
deadline = time.time() + 60
while cancelled.status != "cancelled":
    assert time.time() < deadline, f"the cancel did not take: {cancelled}"
    time.sleep(0.2)
    cancelled = client.fine_tuning.jobs.retrieve(second.id)
out["cancelled"] = cancelled.model_dump()


def refused(call):
    """The SDK error a call raises, as status, class, param and message."""
    try:
        call()
    except openai.APIStatusError as e:
        return {
            "status": e.status_code,
            "error": type(e).__name__,
            "param": e.param,
            "code": e.code,
            "message": e.message,
        }
    raise AssertionError("the call was accepted")


with open(bad_path, "rb") as f:
    bad_file = f.read()
out["bad_file"] = refused(
    lambda: client.files.create(file=("chat.jsonl", bad_file), purpose="fine-tune")
)
out["bad_purpose"] = refused(
    lambda: client.files.create(file=("t.jsonl", open(train_path, "rb")), purpose="batch")
)
out["bad_epochs"] = refused(
    lambda: client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        hyperparameters={"n_epochs": 0},
    )
)
out["bad_multiplier"] = refused(
    lambda: client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"learning_rate_multiplier": "fast"}},
        },
    )
)
out["bad_extension"] = refused(
    lambda: client.fine_tuning.jobs.create(
        model=base_model,
        training_file=training.id,
        extra_body={"tuneserve": {"hyperparameters": {"warmup_steps": -3}}},
    )
)
out["bad_training_file"] = refused(
    lambda: client.fine_tuning.jobs.create(model=base_model, training_file="ds-nope")
)
out["dpo"] = refused(
    lambda: client.fine_tuning.jobs.create(
        model=base_model, training_file=training.id, method={"type": "dpo"}
    )
)
print(json.dumps(out))
