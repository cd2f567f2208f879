"""The HTTP API: thin FastAPI routes over `Service`; service errors keep their message and status."""

from __future__ import annotations

from contextlib import asynccontextmanager
from html import escape
from importlib.resources import files
from typing import Annotated, Any, Literal, NotRequired

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict from Python 3.12 on

from socialcredit.errors import SocialCreditError
from socialcredit.events import event_json_schema
from socialcredit.service._errors import ServiceError
from socialcredit.service._keys import ApiKey, authenticate
from socialcredit.service._limits import Limits, SecurityHeaders
from socialcredit.service._lookups import _json
from socialcredit.service._service import Service

_bearer = HTTPBearer(auto_error=False, description="An API key made with `socialcredit keys create`.")
Purpose = Annotated[str | None, Header(alias="X-Purpose", max_length=500,
                                       description="Why a third party looks the citizen up (logged).")]
CitizenId = Annotated[str, Field(min_length=1, max_length=200)]

# The API requires a source (a key may send only its own sources); the rest is the event record's.
_EVENT_SCHEMA = event_json_schema(required=("source",))


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AppealIn(_Body):
    """A citizen contests one of their events."""

    event_id: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=5000)


class DecisionIn(_Body):
    """An agency's decision on an appeal."""

    upheld: bool
    note: str | None = Field(default=None, max_length=5000)


class GateIn(_Body):
    """A face seen at a subway gate."""

    citizen_id: CitizenId
    gate: str | None = Field(default=None, max_length=200)


class FlightIn(_Body):
    """A passenger checked before boarding or booking."""

    citizen_id: CitizenId
    flight: str | None = Field(default=None, max_length=200)


class LoanIn(_Body):
    """A loan applicant."""

    citizen_id: CitizenId
    amount: float | None = Field(default=None, gt=0, le=1e12)


# What the routes answer, for the OpenAPI schema (the service's dicts go out as they are: these are
# not used to filter them). A field the caller's grant may not show is NotRequired.

class ErrorOut(TypedDict):
    """A refusal: what is wrong, and where (the batch row, 1-based, and the field) where it can say."""

    error: str
    row: NotRequired[int]
    field: NotRequired[str]


class Receipt(TypedDict):
    """A batch stored durably (`projected`: scored too)."""

    batch: int
    events: int
    projected: bool
    day: int
    date: str


Consequence = TypedDict("Consequence", {
    "name": str, "class": str, "effect": str, "context": str | None,
    "since_day": int, "since_date": str, "held_days": int, "description": str | None,
    "parameters": dict[str, Any]})
Consequence.__doc__ = "A benefit or sanction in force: its class has been held since `since_day`."


class Factor(TypedDict):
    """A reason code: a rule's counted points."""

    rule: str
    reason: str
    effect: Literal["lowered", "raised", "none"]
    points: int
    events: int


class Blacklist(TypedDict):
    """Whether travel bans list the citizen, and which."""

    listed: bool
    bans: list[str]


LookupOut = TypedDict("LookupOut", {
    "citizen_id": str, "day": int, "date": str,
    "score": NotRequired[int | None], "class": NotRequired[str | None],  # None: under the policy's min_age
    "benefits": NotRequired[list[Consequence]], "sanctions": NotRequired[list[Consequence]],
    "reasons": NotRequired[list[Factor]], "blacklist": NotRequired[Blacklist]})
LookupOut.__doc__ = "A citizen's score, class and consequences, as far as the caller's grant allows."


class EventOut(TypedDict):
    """An event of the ledger, with what the policy made of it."""

    event_id: str
    day: int
    date: str
    kind: str
    rule: str | None
    points: int
    status: str
    reason: str | None
    source: str | None
    source_ref: str | None
    confidence: float | None
    voided: bool


class HistoryOut(TypedDict):
    """Reason codes and events, as far as the caller's grant allows."""

    citizen_id: str
    day: int
    date: str
    reasons: NotRequired[list[Factor]]
    events: NotRequired[list[EventOut]]


class _Attempt(TypedDict):
    """Who asked about the citizen, with what role and purpose, through which endpoint, when."""

    at: str
    day: int
    date: str
    who: str
    role: str
    purpose: str | None
    endpoint: str


class LookupRow(_Attempt):
    """One answer about the citizen, and the fields it showed."""

    fields: list[str]


class RefusalRow(_Attempt):
    """One refused attempt to read about the citizen, and why."""

    reason: str


class LookupsOut(TypedDict):
    """Who looked the citizen up, and who tried and was refused, newest first."""

    citizen_id: str
    lookups: list[LookupRow]
    refused: list[RefusalRow]


class Sighting(TypedDict):
    """The last camera sighting."""

    day: int
    date: str
    camera: str | None
    confidence: float | None


class ProfileOut(TypedDict):
    """The camera profile: the data centre's age estimate, sightings and flags."""

    citizen_id: str
    day: int
    date: str
    age_estimate: float | None
    age_uncertainty: float | None
    sightings: int
    sightings_by_place_type: dict[str, int]
    last_seen: Sighting | None
    flags: list[str]


class ProfileRecord(TypedDict):
    """A record of the commercial profile: an event whose kind names the signal and the item."""

    event_id: str
    day: int
    date: str
    kind: str
    source: str | None
    source_ref: str | None
    confidence: float | None
    item: str
    signal: Literal["stopped at", "tried on", "bought"]


class Offer(TypedDict):
    """An offer made from the profile, with the records it came from."""

    item: str
    title: str
    discount: float
    interest: int
    valid_until_day: int
    valid_until: str
    records: list[ProfileRecord]
    n_records: int


class OffersOut(TypedDict):
    """The platform's commercial profile of the citizen (its newest records, and how many it holds) and
    the offers built from it."""

    citizen_id: str
    day: int
    date: str
    profile_records: int
    profile: list[ProfileRecord]
    offers: list[Offer]


class AppealOut(TypedDict):
    """An appeal filed."""

    id: int
    event_id: str
    status: Literal["open"]


DecisionOut = TypedDict("DecisionOut", {
    "id": int, "event_id": str, "status": Literal["upheld", "rejected"], "citizen_id": str,
    "score": NotRequired[int | None], "class": NotRequired[str | None]})
DecisionOut.__doc__ = "An appeal decided, with the citizen's score and class after it where the grant shows them."


class GateOut(TypedDict):
    """The subway gate's decision (`because`: the sanctions behind a stop, where the grant shows them)."""

    citizen_id: str
    gate: str | None
    decision: Literal["stop", "pass"]
    because: NotRequired[list[str]]


class FlightOut(TypedDict):
    """The airline's decision, and the fare discount where the grant shows benefits."""

    citizen_id: str
    flight: str | None
    may_board: bool
    decision: Literal["banned", "board"]
    because: NotRequired[list[str]]
    discount: NotRequired[float]


class RateChange(TypedDict):
    """What moved a loan's rate off the base rate, and by how much (a fraction)."""

    because: str
    rate_change: float


LoanOut = TypedDict("LoanOut", {
    "citizen_id": str, "amount": float | None, "approved": bool,
    "rate": float | None, "base_rate": float, "rate_changes": list[RateChange],
    "score": NotRequired[int | None], "class": NotRequired[str | None],  # as the grant shows them
    "sanctions": NotRequired[list[str]], "refused_by": NotRequired[list[str]], "benefits": NotRequired[list[str]],
})
LoanOut.__doc__ = "The bank's quote (`rate`: None when refused), and what moved the rate as the grant shows it."


class DayCount(TypedDict):
    """Events of one day."""

    day: int
    date: str
    events: int


class StatsOut(TypedDict):
    """Class counts, events per day and appeals by status."""

    day: int
    date: str
    policy: str
    classes: dict[str, int]
    events_per_day: list[DayCount]
    events: int
    pending_batches: int
    quarantined: int  # batches the projector gave up on (GET /api/batches/quarantined)
    appeals: dict[str, int]


class QuarantinedOut(TypedDict):
    """An acknowledged batch that could not be stored, set aside with its error."""

    batch: int
    key: str
    events: int
    received: str
    quarantined: str
    error: str


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                "schema": {"type": "integer", "minimum": 1}}}
_ERRORS = {
    401: {"description": "No API key, or an unknown or revoked one."},
    403: {"description": "The key's role, grant or binding does not allow this."},
    404: {"description": "No such citizen, event or appeal."},
    409: {"description": "The request contradicts the current state (an event sent again with other "
                        "content, an appeal decided already)."},
    413: {"description": "The body is larger than the service takes (see Settings)."},
    422: {"description": "Input that does not validate; names the row and field where it can."},
    429: {"description": "Too many requests from this key or address.", "headers": _RETRY_AFTER},
    503: {"description": "Too many requests in flight.", "headers": _RETRY_AFTER},
}


def _answers(ok: type, *statuses: int, code: int = 200, description: str | None = None) -> dict:
    """The OpenAPI responses of a route: `ok` at `code`, and the error body at `statuses` and at
    401, 413, 429 and 503, which any route can answer (a key, a body, the limits)."""
    out: dict[int | str, dict] = {code: {"model": ok, **({"description": description} if description else {})}}
    for status in sorted({*statuses, 401, 413, 429, 503}):
        out[status] = {"model": ErrorOut, **_ERRORS[status]}
    return out


# Light routes run on the event loop: a few indexed reads cost less than two hops to the thread pool
# and back. Routes that score or scan (history, profile, events, appeals) run in the thread pool.
# Look-ups are logged without waiting: the log is written in group commits (see LookupLog).
async def _caller(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> ApiKey:
    return authenticate(request.app.state.service.db, credentials.credentials if credentials else None)


Key = Annotated[ApiKey, Depends(_caller)]


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over `service` (its background threads run while the app runs)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(service.start)
        yield
        await run_in_threadpool(service.stop)

    app = _App(title="socialcredit live service", version="1",
               description=f"Policy '{service.policy.name}'. Every look-up is logged.",
               lifespan=lifespan, docs_url=None, redoc_url=None)
    _add_docs(app)
    app.lean_lookup = _LeanLookup(service)

    app.state.service = service
    # Here, not on top: the pages import this package.
    from socialcredit.web import page_routes
    from socialcredit.web._pages import COOKIE

    app.include_router(page_routes(service))
    app.front = SecurityHeaders(Limits(app.dispatch, service.settings, key_cookie=COOKIE,
                                       is_key=lambda secret: service.is_live_key(secret.decode("latin-1"))))

    @app.exception_handler(SocialCreditError)
    async def service_error(request: Request, exc: SocialCreditError) -> JSONResponse:
        # The one place HTTP meets the error tree: a service error carries its status and where;
        # any other (a policy, an event file) is the request's fault too.
        if isinstance(exc, ServiceError):
            return JSONResponse(exc.detail(), status_code=exc.status)
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # FastAPI's own refusals (no such route or method, a body it cannot read) in the service's
        # error body; a body FastAPI cannot read is input that does not validate, as in a batch.
        cause = exc.__cause__
        if isinstance(cause, ServiceError):  # raised while FastAPI read the body (`Limits`: too large)
            return JSONResponse(cause.detail(), status_code=cause.status)
        if exc.status_code == 400 and cause is not None:
            return JSONResponse({"error": f"body cannot be read as JSON: {cause}", "field": "body"}, status_code=422)
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The service's error body, naming the field; never the value sent, which JSON may not
        # be able to write back (NaN, Infinity, 1e309 in a number).
        return JSONResponse(_invalid(exc.errors()), status_code=422)

    @app.post("/api/events", tags=["events"],
              responses=_answers(Receipt, 403, 409, 422, description="Durable and scored.")
              | {202: {"model": Receipt, "description": "Durable, not yet scored (`?wait=false`, or scoring "
                                                         "took longer than the service waits)."}},
              openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
        "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def post_events(request: Request, key: Key,
                          wait: Annotated[bool, Query(description="Answer once scores are updated.")] = True):
        """Send a batch of events (JSON array or NDJSON); atomic and idempotent by event_id."""
        with service.receiving():  # the projector lets batches being uploaded in first
            body = await request.body()  # no larger than Settings.max_body_bytes: `Limits` sees to it
        receipt = await run_in_threadpool(service.ingest, key, body, wait=wait)
        # 200: durable and scored; 202: durable, scores follow shortly.
        return JSONResponse(receipt, status_code=200 if receipt["projected"] else 202)

    @app.get("/api/citizens/{citizen_id}", tags=["look-ups"], responses=_answers(LookupOut, 403, 404, 422))
    async def get_citizen(citizen_id: str, key: Key, purpose: Purpose = None):
        """Score, class, benefits and sanctions, as far as the caller's grant allows; logged."""
        # Most requests never get here: `_App` answers them first (see _LeanLookup).
        return JSONResponse(service.lookup(key, citizen_id, purpose))

    @app.get("/api/citizens/{citizen_id}/history", tags=["look-ups"], responses=_answers(HistoryOut, 403, 404, 422))
    def get_history(citizen_id: str, key: Key, purpose: Purpose = None):
        """Reason codes and events with points and provenance; logged."""
        return service.history(key, citizen_id, purpose)

    @app.get("/api/citizens/{citizen_id}/lookups", tags=["look-ups"], responses=_answers(LookupsOut, 403, 404, 422))
    def get_lookups(citizen_id: str, key: Key, purpose: Purpose = None):
        """Who looked this citizen up (the citizen and analysts only); an analyst's reading is logged."""
        return service.lookups(key, citizen_id, purpose)

    @app.get("/api/citizens/{citizen_id}/profile", tags=["look-ups"], responses=_answers(ProfileOut, 403, 404, 422))
    def get_profile(citizen_id: str, key: Key, purpose: Purpose = None):
        """The camera profile (agency and security only); logged."""
        return service.profile(key, citizen_id, purpose)

    @app.get("/api/citizens/{citizen_id}/offers", tags=["look-ups"], responses=_answers(OffersOut, 403, 404, 422))
    def get_offers(citizen_id: str, key: Key, purpose: Purpose = None):
        """The platform's commercial profile (in-store records, purchases) and the offers built from it,
        each with its records; logged."""
        return service.offers(key, citizen_id, purpose)

    @app.post("/api/appeals", tags=["appeals"], status_code=201,
              responses=_answers(AppealOut, 403, 404, 409, 422, code=201))
    def post_appeal(appeal: AppealIn, key: Key):
        """A citizen contests one of their events."""
        return service.file_appeal(key, appeal.event_id, appeal.reason)

    @app.post("/api/appeals/{appeal_id}/decision", tags=["appeals"],
              responses=_answers(DecisionOut, 403, 404, 409, 422))
    def post_decision(appeal_id: Annotated[int, PathParam(ge=1, le=2**62)], decision: DecisionIn, key: Key):
        """An agency decides; an upheld appeal voids the event and re-scores from the ledger."""
        return service.decide_appeal(key, appeal_id, decision.upheld, decision.note)

    @app.post("/api/gates/subway", tags=["consequences"], responses=_answers(GateOut, 403, 404, 422))
    async def post_gate(check: GateIn, key: Key, purpose: Purpose = None):
        """Subway gate (security): pass or stop; logged."""
        return service.subway_gate(key, check.citizen_id, check.gate, purpose)

    @app.post("/api/flights/check", tags=["consequences"], responses=_answers(FlightOut, 403, 404, 422))
    async def post_flight(check: FlightIn, key: Key, purpose: Purpose = None):
        """Airline: may board or banned; logged."""
        return service.flight_check(key, check.citizen_id, check.flight, purpose)

    @app.post("/api/loans/quote", tags=["consequences"], responses=_answers(LoanOut, 403, 404, 422))
    async def post_loan(quote: LoanIn, key: Key, purpose: Purpose = None):
        """Bank: interest rate by class; logged."""
        return service.loan_quote(key, quote.citizen_id, quote.amount, purpose)

    @app.get("/api/stats", tags=["statistics"], responses=_answers(StatsOut, 403))
    def get_stats(key: Key):
        """Class counts and events per day."""
        return service.stats(key)

    @app.get("/api/batches/quarantined", tags=["events"], responses=_answers(list[QuarantinedOut], 403))
    def get_quarantined(key: Key):
        """Acknowledged batches that could not be stored, with their errors: a sender's own batches;
        analysts and agencies see all."""
        return service.quarantined(key)

    return app


# The interactive documentation, served whole by the app (nothing from a CDN, so it works offline):
# Swagger UI as the fastapi-offline package ships it, started by a script file of this origin, so
# the page runs under the pages' content security policy. No ReDoc: its bundle always loads its
# vendor's logo from a CDN.
_DOCS_ASSETS = "/docs/assets"
_SWAGGER_INIT = "/docs/swagger-init.js"
_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{init}"></script>
</body>
</html>
"""


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs, its scripts and styles from the app itself."""
    app.mount(_DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")
    swagger = _SWAGGER_PAGE.format(title=escape(app.title), assets=_DOCS_ASSETS, init=_SWAGGER_INIT)
    init = files("socialcredit.service") / "docs" / "swagger-init.js"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    @app.get(_SWAGGER_INIT, include_in_schema=False)
    async def swagger_init() -> FileResponse:
        return FileResponse(str(init), media_type="text/javascript")


def _invalid(errors: list[dict]) -> dict:
    """The error body of a request FastAPI refuses: each problem with its place, the first one's field."""
    def place(loc: tuple) -> str:
        # ("body", "amount") -> "amount"; ("header", "X-Purpose") -> "X-Purpose"; ("body",) -> "body"
        return (".".join(str(part) for part in loc[1:]) or str(loc[0])) if loc else "request"

    problems = [f"{place(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors] or ["invalid request"]
    out: dict = {"error": "; ".join(problems)}
    if errors:
        out["field"] = place(tuple(errors[0].get("loc", ())))
    return out


class _App(FastAPI):
    """FastAPI behind the service's front (`front`: the limits and security headers, see
    `_limits`), with GET /api/citizens/{citizen_id} answered before the middleware stack.

    The look-up is the hot path: `_LeanLookup` answers it as a plain ASGI handler (no middleware,
    routing or dependency solving, a pre-encoded JSON body). What it does not take goes on to the
    FastAPI route, which documents it in the OpenAPI schema and gives the same answers.
    """

    front: ASGIApp | None = None
    lean_lookup: _LeanLookup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.front or self.dispatch)(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The look-up hot path, else FastAPI."""
        if (scope["type"] == "http" and scope["method"] == "GET" and self.lean_lookup is not None
                and scope["path"].startswith(_CITIZENS) and not self.root_path
                and await self.lean_lookup(scope, send)):
            return
        await super().__call__(scope, receive, send)


_CITIZENS = "/api/citizens/"
_JSON_HEADER = (b"content-type", b"application/json")


class _LeanLookup:
    """GET /api/citizens/{citizen_id} with a plain bearer key, as a bare ASGI handler."""

    def __init__(self, service: Service):
        self.service = service

    async def __call__(self, scope: Scope, send: Send) -> bool:
        """Answer the request and return True, or return False to leave it to the FastAPI route."""
        citizen_id = scope["path"][len(_CITIZENS):]
        if not citizen_id or "/" in citizen_id:
            return False
        bearer = purpose = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if bearer is None:
                    bearer = value
            elif name == b"x-purpose" and purpose is None:
                purpose = value
        if bearer is None or bearer[:7].lower() != b"bearer " or (purpose is not None and len(purpose) > 500):
            return False
        secret = bearer[7:].strip()
        if not secret:
            return False
        service = self.service
        try:
            key = authenticate(service.db, secret.decode("latin-1"))
            body = service.lookup_json(key, citizen_id, None if purpose is None else purpose.decode("latin-1"))
            status = 200
        except ServiceError as exc:
            body = _json(exc.detail())
            status = exc.status
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return True

