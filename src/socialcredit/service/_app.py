"""The HTTP API: thin FastAPI routes over `Service`; service errors keep their message and status."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from socialcredit.errors import SocialCreditError
from socialcredit.events import event_json_schema
from socialcredit.service._errors import ServiceError, TooLarge
from socialcredit.service._keys import ApiKey, authenticate
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
               lifespan=lifespan)
    app.lean_lookup = _LeanLookup(service)

    app.state.service = service
    from socialcredit.web import page_routes  # here, not on top: the pages import this package

    app.include_router(page_routes(service))

    @app.exception_handler(SocialCreditError)
    async def service_error(request: Request, exc: SocialCreditError) -> JSONResponse:
        # The one place HTTP meets the error tree: a service error carries its status and where;
        # any other (a policy, an event file) is the request's fault too.
        if isinstance(exc, ServiceError):
            return JSONResponse(exc.detail(), status_code=exc.status)
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.post("/api/events", tags=["events"], responses={202: {"description": "Durable, not yet scored."}},
              openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
        "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def post_events(request: Request, key: Key,
                          wait: Annotated[bool, Query(description="Answer once scores are updated.")] = True):
        """Send a batch of events (JSON array or NDJSON); atomic and idempotent by event_id."""
        with service.receiving():  # the projector lets batches being uploaded in first
            body = await _read_body(request, service.settings.max_body_bytes)
        receipt = await run_in_threadpool(service.ingest, key, body, wait=wait)
        # 200: durable and scored; 202: durable, scores follow shortly.
        return JSONResponse(receipt, status_code=200 if receipt["projected"] else 202)

    @app.get("/api/citizens/{citizen_id}", tags=["look-ups"])
    async def get_citizen(citizen_id: str, key: Key, purpose: Purpose = None):
        """Score, class, benefits and sanctions, as far as the caller's grant allows; logged."""
        # Most requests never get here: `_App` answers them first (see _LeanLookup).
        return JSONResponse(service.lookup(key, citizen_id, purpose))

    @app.get("/api/citizens/{citizen_id}/history", tags=["look-ups"])
    def get_history(citizen_id: str, key: Key, purpose: Purpose = None):
        """Reason codes and events with points and provenance; logged."""
        return service.history(key, citizen_id, purpose)

    @app.get("/api/citizens/{citizen_id}/lookups", tags=["look-ups"])
    def get_lookups(citizen_id: str, key: Key, purpose: Purpose = None):
        """Who looked this citizen up (the citizen and analysts only); an analyst's reading is logged."""
        return service.lookups(key, citizen_id, purpose)

    @app.get("/api/citizens/{citizen_id}/profile", tags=["look-ups"])
    def get_profile(citizen_id: str, key: Key, purpose: Purpose = None):
        """The camera profile (agency and security only); logged."""
        return service.profile(key, citizen_id, purpose)

    @app.post("/api/appeals", tags=["appeals"], status_code=201)
    def post_appeal(appeal: AppealIn, key: Key):
        """A citizen contests one of their events."""
        return service.file_appeal(key, appeal.event_id, appeal.reason)

    @app.post("/api/appeals/{appeal_id}/decision", tags=["appeals"])
    def post_decision(appeal_id: Annotated[int, PathParam(ge=1, le=2**62)], decision: DecisionIn, key: Key):
        """An agency decides; an upheld appeal voids the event and re-scores from the ledger."""
        return service.decide_appeal(key, appeal_id, decision.upheld, decision.note)

    @app.post("/api/gates/subway", tags=["consequences"])
    async def post_gate(check: GateIn, key: Key, purpose: Purpose = None):
        """Subway gate (security): pass or stop; logged."""
        return service.subway_gate(key, check.citizen_id, check.gate, purpose)

    @app.post("/api/flights/check", tags=["consequences"])
    async def post_flight(check: FlightIn, key: Key, purpose: Purpose = None):
        """Airline: may board or banned; logged."""
        return service.flight_check(key, check.citizen_id, check.flight, purpose)

    @app.post("/api/loans/quote", tags=["consequences"])
    async def post_loan(quote: LoanIn, key: Key, purpose: Purpose = None):
        """Bank: interest rate by class; logged."""
        return service.loan_quote(key, quote.citizen_id, quote.amount, purpose)

    @app.get("/api/stats", tags=["statistics"])
    def get_stats(key: Key):
        """Class counts and events per day."""
        return service.stats(key)

    return app


class _App(FastAPI):
    """FastAPI, with GET /api/citizens/{citizen_id} answered before the middleware stack.

    The look-up is the hot path: `_LeanLookup` answers it as a plain ASGI handler (no middleware,
    routing or dependency solving, a pre-encoded JSON body). What it does not take goes on to the
    FastAPI route, which documents it in the OpenAPI schema and gives the same answers.
    """

    lean_lookup: _LeanLookup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {int(declared):,} bytes; at most {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"body larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
