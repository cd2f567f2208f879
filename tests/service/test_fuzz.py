"""Fuzz every operation of the OpenAPI schema with schemathesis: no 500, whatever the input."""

import atexit
import json
import shutil
import tempfile

import schemathesis
from hypothesis import HealthCheck, settings

from socialcredit.service import Service, authenticate, create_app

from .conftest import DAY, auth, event, make_keys

_dir = tempfile.mkdtemp(prefix="sc-fuzz-")
_service = Service.open(f"sqlite:///{_dir}/sc.db", "accountable")
_service.ledger.set_day(DAY)
KEYS = make_keys(_service.db)
_service.ingest(authenticate(_service.db, KEYS["agency"]), json.dumps([event(0, confidence=0.99)]).encode())
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_service))


@atexit.register  # the schema is built at collection, so it is cleaned up at exit, run or not
def _cleanup():
    _service.close()
    shutil.rmtree(_dir, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    for role in ("agency", "citizen"):
        response = case.call(headers=auth(KEYS[role], "fuzzing"))
        assert response.status_code < 500, (role, case.method, case.path, response.text[:500])
