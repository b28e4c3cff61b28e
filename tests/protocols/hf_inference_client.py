"""Classifies through huggingface_hub's InferenceClient against a live
tuneserve, the way a user of the Hub's client would point it at a server:
`base_url=` (posts to `/`) and `model=` a model's own URL (`/models/{id}`).

Usage: hf_inference_client.py BASE_URL API_KEY MODEL_ID TEXT...
Prints one JSON object: for each way of calling, the labels and scores the
client returned, per text; raises on anything unexpected.
"""

import json
import sys

import huggingface_hub
from huggingface_hub import InferenceClient

base_url, api_key, model_id, *texts = sys.argv[1:]


def plain(elements):
    """The client's output elements as [label, score] pairs, in its order."""
    return [[e.label, e.score] for e in elements]


by_base_url = InferenceClient(base_url=base_url, api_key=api_key)
by_model_url = InferenceClient(model=f"{base_url}/models/{model_id}", api_key=api_key)
out = {
    "huggingface_hub": huggingface_hub.__version__,
    "base_url": [plain(by_base_url.text_classification(t)) for t in texts],
    "model_url": [plain(by_model_url.text_classification(t)) for t in texts],
    "top_k_2": [plain(by_base_url.text_classification(t, top_k=2)) for t in texts],
    "sigmoid": [
        plain(by_model_url.text_classification(t, function_to_apply="sigmoid"))
        for t in texts
    ],
}
# Without the key the server refuses, and the client raises its HTTP error.
try:
    InferenceClient(base_url=base_url, api_key="wrong").text_classification(texts[0])
    out["without_key"] = "accepted"
except huggingface_hub.errors.HfHubHTTPError as e:
    out["without_key"] = e.response.status_code
print(json.dumps(out))
