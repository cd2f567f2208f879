"""Fuzz every operation of the OpenAPI schema with schemathesis: no 500, whatever the input, and
every answer as the schema documents it (its status, content type, headers and body).

Reproducible: schemathesis draws from a fixed seed (SOCIALCREDIT_FUZZ_SEED, default 2018), so a
failure shows again on the next run. NDJSON batches are fuzzed too, as event records and as raw text.
"""

import atexit
import json
import os
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from socialcredit.service import Service, authenticate, create_app

from .conftest import DAY, auth, event, make_keys

FUZZ_SEED = int(os.environ.get("SOCIALCREDIT_FUZZ_SEED", "2018"))
NDJSON = "application/x-ndjson"

_dir = tempfile.mkdtemp(prefix="sc-fuzz-")
_service = Service.open(f"sqlite:///{_dir}/sc.db", "accountable")
_service.ledger.set_day(DAY)
KEYS = make_keys(_service.db)
_service.ingest(authenticate(_service.db, KEYS["agency"]), json.dumps([event(0, confidence=0.99)]).encode())
_app = create_app(_service)
# The schema says an NDJSON body is a string; for the fuzzer its lines are also the JSON body's event
# records, so that it sends well-formed batches with odd values as well as arbitrary text.
_body = _app.openapi()["paths"]["/api/events"]["post"]["requestBody"]["content"]
_body[NDJSON]["schema"] = {"anyOf": [{"type": "string"}, _body["application/json"]["schema"]]}
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)
schema.config.seed = FUZZ_SEED


@schemathesis.serializer(NDJSON)
def _ndjson(ctx, value) -> bytes:
    if isinstance(value, list):
        return "\n".join(json.dumps(row) for row in value).encode()
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


@atexit.register  # the schema is built at collection, so it is cleaned up at exit, run or not
def _cleanup():
    _service.close()
    shutil.rmtree(_dir, ignore_errors=True)


# No 5xx, and the answer is what the schema says: a documented status, content type and headers,
# and a body that validates against that status's schema.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=False, suppress_health_check=list(HealthCheck))
def test_answers_are_documented_and_never_server_errors(case):
    for role in ("agency", "citizen"):
        case.call_and_validate(headers=auth(KEYS[role], "fuzzing"), checks=CHECKS)


@settings(max_examples=50, deadline=None, derandomize=False, suppress_health_check=list(HealthCheck))
@seed(FUZZ_SEED)
@given(case=schema["/api/events"]["POST"].as_strategy().filter(lambda case: case.media_type == NDJSON))
def test_ndjson_batches_are_answered_as_documented(case):
    case.call_and_validate(headers=auth(KEYS["agency"], "fuzzing"), checks=CHECKS)
