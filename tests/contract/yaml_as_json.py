"""Prints openapi.yaml as read by PyYAML, a YAML 1.1 reader, as JSON.

tests/it/contract.rs compares it with the document the server generates: a
scalar YAML 1.1 reads differently from YAML 1.2 (`no` as false, say) shows
up as a difference. Usage: yaml_as_json.py OPENAPI_YAML
"""

import json
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    document = yaml.safe_load(f)
json.dump(document, sys.stdout)
