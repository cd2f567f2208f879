"""The OpenAPI schema tells the truth: every route documents its answers, and real answers match it."""

import json

import polars as pl
import schemathesis

from .conftest import auth

ERROR = {"$ref": "#/components/schemas/ErrorOut"}
# Every status each route can answer. 401, 413, 429 and 503 go with any route: a key, a body, the limits.
ANY = {"401", "413", "429", "503"}
STATUSES = {
    ("post", "/api/events"): {"200", "202", "403", "409", "422"},
    ("get", "/api/citizens/{citizen_id}"): {"200", "403", "404", "422"},
    ("get", "/api/citizens/{citizen_id}/history"): {"200", "403", "404", "422"},
    ("get", "/api/citizens/{citizen_id}/lookups"): {"200", "403", "404", "422"},
    ("get", "/api/citizens/{citizen_id}/profile"): {"200", "403", "404", "422"},
    ("get", "/api/citizens/{citizen_id}/offers"): {"200", "403", "404", "422"},
    ("post", "/api/appeals"): {"201", "403", "404", "409", "422"},
    ("post", "/api/appeals/{appeal_id}/decision"): {"200", "403", "404", "409", "422"},
    ("post", "/api/gates/subway"): {"200", "403", "404", "422"},
    ("post", "/api/flights/check"): {"200", "403", "404", "422"},
    ("post", "/api/loans/quote"): {"200", "403", "404", "422"},
    ("get", "/api/stats"): {"200", "403"},
    ("get", "/api/batches/quarantined"): {"200", "403"},
}


def test_every_route_documents_its_answers_and_their_bodies(client):
    spec = client.app.openapi()
    documented = {(method, path): op["responses"] for path, ops in spec["paths"].items() for method, op in ops.items()}
    assert set(documented) == set(STATUSES)
    for route, responses in documented.items():
        assert set(responses) == STATUSES[route] | ANY, route
        for status, response in responses.items():
            schema = response["content"]["application/json"]["schema"]
            if status.startswith("2"):
                named = schema.get("items", schema).get("$ref", "")  # an object, or a list of them
                assert named.endswith(("Out", "Receipt")), (route, status)
            else:
                assert schema == ERROR, (route, status)
        for status in ("429", "503"):
            assert responses[status]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    error = spec["components"]["schemas"]["ErrorOut"]
    assert error["required"] == ["error"]
    assert {name: p["type"] for name, p in error["properties"].items()} == {
        "error": "string", "row": "integer", "field": "string"}


def undocumented(value, schema: dict, spec: dict, where: str = "") -> list[str]:
    """The fields of `value` (an answer's JSON) that `schema` does not name, where it names its fields."""
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    found = []
    if "anyOf" in schema:  # nullable: the other branch names the fields
        for branch in schema["anyOf"]:
            found += undocumented(value, branch, spec, where)
    elif isinstance(value, dict) and "properties" in schema:
        for name, item in value.items():
            if name in schema["properties"]:
                found += undocumented(item, schema["properties"][name], spec, f"{where}.{name}")
            else:
                found.append(f"{where}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            found += undocumented(item, schema["items"], spec, f"{where}[]")
    return found


def test_answers_from_a_simulated_run_match_the_schema(run_world):
    """Every route's answers for every role that gets one, success and refusal, against the documented
    schema of their status (schemathesis validates each: status, content type, headers, body), and
    no field left undocumented."""
    ok: dict[tuple[str, str], int] = {}
    for policy in ("taz-2018", "accountable"):
        ask_everything(run_world(policy), ok)
    assert set(ok) == {(method.upper(), path) for method, path in STATUSES}, sorted(ok)


def ask_everything(world, ok: dict[tuple[str, str], int]) -> None:
    """Call every route as every role of `world`, checking each answer; count the successes in `ok`."""
    spec = world.client.app.openapi()
    schema = schemathesis.openapi.from_dict(spec)
    cid = world.citizen
    event_id = world.loaded.events_of(cid).filter(pl.col("source") == "camera")["event_id"][-1]

    def answer(method, route, role, path=None, headers=(), **kwargs):
        response = world.client.request(method, path or route.replace("{citizen_id}", cid),
                                        headers={**auth(world.keys[role], "checking"), **dict(headers)}, **kwargs)
        schema[route][method].validate_response(response)
        documented = spec["paths"][route][method.lower()]["responses"][str(response.status_code)]
        extra = undocumented(response.json(), documented["content"]["application/json"]["schema"], spec)
        assert not extra, f"{method} {route} answers {response.status_code} with undocumented fields {extra}"
        if response.is_success:
            ok[(method, route)] = ok.get((method, route), 0) + 1
        return response

    # A record of the shop's profile, so that the offers answer holds an offer and its records.
    answer("POST", "/api/events", "platform", content=json.dumps([{
        "event_id": f"oa-{world.policy.name}-shop", "citizen_id": cid, "kind": "instore.tried_on.jackets",
        "day": world.service.day, "source": "e-commerce", "source_ref": "store 1", "confidence": 0.9}]))
    for role in world.keys:
        for route in ("/api/citizens/{citizen_id}", "/api/citizens/{citizen_id}/history",
                      "/api/citizens/{citizen_id}/lookups", "/api/citizens/{citizen_id}/profile",
                      "/api/citizens/{citizen_id}/offers", "/api/stats", "/api/batches/quarantined"):
            answer("GET", route, role)
        answer("POST", "/api/gates/subway", role, json={"citizen_id": cid, "gate": "g-1"})
        answer("POST", "/api/flights/check", role, json={"citizen_id": cid})
        answer("POST", "/api/loans/quote", role, json={"citizen_id": cid, "amount": 5e4})
        answer("POST", "/api/loans/quote", role, content=json.dumps({"citizen_id": cid, "amount": float("nan")}),
               headers={"content-type": "application/json"})
    answer("GET", "/api/citizens/{citizen_id}", "bank", path="/api/citizens/nobody")
    answer("GET", "/api/citizens/{citizen_id}", "bank", headers=auth("sc_made-up"))
    batch = [{"event_id": f"oa-{world.policy.name}-{i}", "citizen_id": cid, "kind": "traffic.red_light", "day": 1,
              "source": "camera"} for i in range(3)]
    answer("POST", "/api/events", "agency", content=json.dumps(batch[:2]))
    answer("POST", "/api/events", "agency", content=json.dumps(batch[2:]), params={"wait": "false"})
    answer("POST", "/api/events", "agency", content=json.dumps([{**batch[0], "day": "x"}]))
    filed = answer("POST", "/api/appeals", "citizen", json={"event_id": event_id, "reason": "not me"})
    if filed.status_code == 201:
        route = "/api/appeals/{appeal_id}/decision"
        path = route.replace("{appeal_id}", str(filed.json()["id"]))
        answer("POST", route, "agency", path=path, json={"upheld": True})
        answer("POST", route, "agency", path=path, json={"upheld": False})  # 409: decided
