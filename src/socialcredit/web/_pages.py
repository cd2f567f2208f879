"""Server-rendered pages over `Service`: the citizen app, the third-party portal, the analyst dashboard.

Every page calls the same `Service` methods as the API, so access control and the look-up log are
the service's own. Signing in exchanges an API key for a server-side session (see `Sessions`): the
cookie holds only the session id (HttpOnly, SameSite=Strict, Secure over TLS, with a Max-Age), one
per area (its path is the area's), so that the app and the portal can be open side by side.

Every POST must come from a page of this site: a signed-in form carries the session's CSRF token
and a foreign Origin (or Referer) is refused; a sign-in form, which has no session yet, is checked
by its Origin (or Referer) alone. A refused POST changes nothing and gets a 403 page.
"""

from __future__ import annotations

import re
from itertools import groupby
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from socialcredit.offers import SIGNALS, WEAK_MATCH, WINDOW_DAYS, is_profile_kind_text
from socialcredit.policy import Policy
from socialcredit.service import ApiKey, Forbidden, Service, ServiceError, Unauthorized, authenticate
from socialcredit.service._access import DISCLOSURES
from socialcredit.service._sessions import SESSION_MAX_AGE_S, Sessions, csrf_token, csrf_valid
from socialcredit.web._dashboard import Dashboard
from socialcredit.web._theme import class_styles, gauge

HERE = Path(__file__).parent
COOKIE = "sc_session"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 64 * 1024
HISTORY_ROWS = 50

# The portal's own action for each role, next to the plain look-up every role with a grant has.
ACTIONS = {
    "bank": ("loan", "Loan quote", "Loan amount (optional)"),
    "airline": ("flight", "Boarding check", "Flight (optional)"),
    "security": ("gate", "Subway gate check", "Gate (optional)"),
    "employer": ("lookup", "Employer check", None),
    "landlord": ("lookup", "Tenant check", None),
    "platform": ("lookup", "Customer check", None),
    "travel": ("lookup", "Ticket check", None),
    "agency": ("lookup", "Case look-up", None),
    "analyst": ("lookup", "Look-up", None),
}
# What a purpose looks like for each role (the form's placeholder).
PURPOSE_EXAMPLES = {
    "bank": "mortgage application 2018-117",
    "airline": "boarding flight CA 1234",
    "security": "incident report 2018-0042",
    "employer": "job application, warehouse",
    "landlord": "tenancy application, flat 4B",
    "platform": "order 55-1021, payment check",
    "travel": "train ticket booking 7781",
    "agency": "case 2018-311",
    "analyst": "audit sample 12",
}
HISTORY_FILTERS = ("kind", "source", "status")
STATUS_TEXT = {
    "counted": "counted",
    "unknown_kind": "not scored: no rule for this kind",
    "source": "not scored: source not accepted",
    "confidence": "not scored: camera match too weak",
    "cap": "not scored: daily cap reached",
    "expired": "expired",
    "future": "not yet counted",
    "underage": "not scored: before the citizen was of age",
    "voided": "voided on appeal",
}
TITLES = {401: "Please sign in again", 403: "Not allowed", 404: "Not found", 409: "Already done",
          413: "Too large", 422: "Please check your input"}


def page_routes(service: Service, *, session_max_age_s: int = SESSION_MAX_AGE_S) -> APIRouter:
    """The web pages over `service`: `/`, `/app`, `/portal`, `/dashboard` and their static files."""
    router = APIRouter(include_in_schema=False)
    sessions = Sessions(service.db, max_age_s=session_max_age_s)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters |= {"on_date": on_date, "undated": undated}
    # A record of the commercial profile: contested in the app like a penalty (a look-alike's visit).
    templates.env.tests["profile_kind"] = is_profile_kind_text
    styles = class_styles(service.policy)
    style_of = {s.name: s for s in styles}
    dashboard = Dashboard(service, styles)
    router.lifespan_context = dashboard.running  # counts arrivals from the start, reads the run ahead
    static = {p.name: p for p in (HERE / "static").iterdir() if p.is_file()}

    def render(request: Request, name: str, code: int = 200, **context) -> HTMLResponse:
        session_id = request.cookies.get(COOKIE)
        context |= {"window_days": WINDOW_DAYS, "signals": SIGNALS, "weak_match": WEAK_MATCH,
                    "policy": service.policy, "day": service.day, "date": service.date, "style_of": style_of,
                    "styles": styles, "csrf": csrf_token(session_id) if session_id else None,
                    "session_hours": sessions.max_age_s / 3600}
        return templates.TemplateResponse(request, name, context, status_code=code)

    def error_page(request: Request, exc: ServiceError, area: str, *, own_page: bool = False) -> HTMLResponse:
        """The error as a page; `own_page`: the area's own page failed, so it offers sign-out, not a
        link back to itself."""
        response = render(request, "error.html", exc.status, title=TITLES.get(exc.status, "Refused"),
                          message=exc.message, area=area, signed_out=isinstance(exc, Unauthorized),
                          cross_site=isinstance(exc, _CrossSite), own_page=own_page)
        if isinstance(exc, Unauthorized):  # an ended session, or one of a revoked key, is of no further use
            forget_session(request, response, area)
        return response

    def caller(request: Request) -> ApiKey | None:
        session_id = request.cookies.get(COOKIE)
        return sessions.key_for(session_id) if session_id else None

    async def posted(request: Request) -> tuple[ApiKey | None, dict[str, str]]:
        """The caller and form of a POST from a signed-in page; _CrossSite if no page of this site sent it."""
        form = await _form(request)
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            return None, form
        _check_sent_here(request, form, session_id)
        return await run_in_threadpool(sessions.key_for, session_id), form

    def forget_session(request: Request, response: Response, area: str) -> None:
        response.delete_cookie(COOKIE, path=f"/{area}", secure=request.url.scheme == "https", httponly=True,
                               samesite="strict")

    async def sign_in(request: Request, area: str) -> Response:
        form = await _form(request)
        if not _same_origin(request):  # no session yet, so no token: the Origin alone tells
            return error_page(request, _CrossSite(FORGED), area)
        try:
            key = authenticate(service.db, form.get("key", "").strip())
        except Unauthorized as exc:
            return render(request, "signin.html", 401, area=area, message=exc.message)
        previous = request.cookies.get(COOKIE)
        if previous:  # signing in again (perhaps with another key) ends the session before
            await run_in_threadpool(sessions.end, previous)
        session_id = await run_in_threadpool(sessions.start, key)
        response = RedirectResponse(f"/{area}", status_code=303)
        response.set_cookie(COOKIE, session_id, max_age=sessions.max_age_s, path=f"/{area}",
                            secure=request.url.scheme == "https", httponly=True, samesite="strict")
        return response

    async def sign_out(request: Request, area: str) -> Response:
        try:
            form = await _form(request)
            if session_id := request.cookies.get(COOKIE):
                _check_sent_here(request, form, session_id)
                await run_in_threadpool(sessions.end, session_id)
        except ServiceError as exc:
            return error_page(request, exc, area)
        response = RedirectResponse(f"/{area}", status_code=303)
        forget_session(request, response, area)
        return response

    # -- home and static files ---------------------------------------------------------------------

    @router.get("/", response_class=HTMLResponse)
    def home(request: Request):
        """Where to go: the app, the portal, the dashboard, and a tour of the demo."""
        citizen = service.db.get_meta("demo_citizen")
        return render(request, "home.html", citizen=citizen, tour=tour(service.policy, citizen))

    @router.get("/static/plotly.min.js")
    def plotly_js():
        """Plotly's JavaScript from the installed plotly package (no CDN)."""
        return Response(_plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/static/{name}")
    def static_file(name: str):
        """The package's own CSS and JavaScript."""
        if name not in static:
            return Response("not found", status_code=404, media_type="text/plain")
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(static[name].read_bytes(), media_type=media)

    # -- citizen app -------------------------------------------------------------------------------

    @router.get("/app", response_class=HTMLResponse)
    async def citizen_app(request: Request, everything: Annotated[bool, Query(alias="all")] = False,
                          done: str | None = None, kind: str = "", source: str = "", status: str = ""):
        """The citizen's score, class, consequences, history (filtered by kind, source and status),
        who looked them up, and appeals."""
        try:
            key = await run_in_threadpool(caller, request)
            if key is None:
                return render(request, "signin.html", area="app")
            if key.role != "citizen":
                return render(request, "error.html", 403, title="Not allowed", area="app", own_page=True,
                              message=f"This is the citizen app; the key '{key.name}' is a {key.role} key. "
                                      "Sign out and sign in with a citizen key, or use the portal.")
            if service.access.grant_of("citizen") is None:
                return render(request, "error.html", 403, title="Not allowed", area="app", own_page=True,
                              message=f"Policy {service.policy.name} gives citizens no access to their own "
                                      "score, history or look-ups, so this app has nothing it may show you.")
            chosen = {"kind": kind, "source": source, "status": status}
            view = await run_in_threadpool(_citizen_view, service, key, everything, chosen)
        except ServiceError as exc:
            return error_page(request, exc, "app", own_page=True)
        score = view["status"].get("score")
        return render(request, "app.html", key=key, done=done, status_text=STATUS_TEXT,
                      gauge=None if score is None else gauge(service.policy, score), **view)

    @router.post("/app/signin")
    async def app_sign_in(request: Request):
        """Sign in to the citizen app."""
        return await sign_in(request, "app")

    @router.post("/app/signout")
    async def app_sign_out(request: Request):
        """Sign out of the citizen app: the session ends, so its cookie is of no further use."""
        return await sign_out(request, "app")

    @router.post("/app/appeal")
    async def app_appeal(request: Request):
        """File an appeal against one of the citizen's events."""
        try:
            key, form = await posted(request)
            if key is None:
                return render(request, "signin.html", 401, area="app")
            await run_in_threadpool(service.file_appeal, key, form.get("event_id", ""), form.get("reason", ""))
        except ServiceError as exc:
            return error_page(request, exc, "app")
        return RedirectResponse("/app?done=appeal#appeals", status_code=303)

    # -- third-party portal ------------------------------------------------------------------------

    def portal_page(request: Request, key: ApiKey, code: int = 200, **context) -> HTMLResponse:
        grant = service.access.grant_of(key.role)
        appeals = _open_appeals(service, key) if key.role == "agency" and grant else []
        # A button only where the grant lets it answer: the role's own check needs a grant, the
        # look-up, search, camera profile and offers the fields their disclosures need.
        buttons = {name: grant is not None and bool(_needed(name) & set(grant.fields))
                   for name in ("lookup", "search", "profile", "offers")}
        return render(request, "portal.html", code, key=key, grant=grant, action=ACTIONS.get(key.role),
                      appeals=appeals, buttons=buttons, purpose_example=PURPOSE_EXAMPLES.get(key.role, "case 2018-1"),
                      **context)

    @router.get("/portal", response_class=HTMLResponse)
    def portal(request: Request, decided: str | None = None, citizen_id: str = "", purpose: str = ""):
        """Sign-in, or the desk of the signed-in organisation (`citizen_id`, `purpose`: filled in)."""
        try:
            key = caller(request)
        except ServiceError as exc:
            return error_page(request, exc, "portal", own_page=True)
        if key is None:
            return render(request, "signin.html", area="portal")
        if key.role == "citizen":
            return render(request, "error.html", 403, title="Not allowed", area="portal", own_page=True,
                          message="The portal is for organisations; a citizen key opens the citizen app.")
        return portal_page(request, key, decided=decided, form={"citizen_id": citizen_id, "purpose": purpose})

    @router.post("/portal/signin")
    async def portal_sign_in(request: Request):
        """Sign in to the portal."""
        return await sign_in(request, "portal")

    @router.post("/portal/signout")
    async def portal_sign_out(request: Request):
        """Sign out of the portal: the session ends, so its cookie is of no further use."""
        return await sign_out(request, "portal")

    @router.post("/portal/check", response_class=HTMLResponse)
    async def portal_check(request: Request):
        """Look a citizen up, or run the role's own check, with a stated purpose."""
        try:
            key, form = await posted(request)
        except ServiceError as exc:
            return error_page(request, exc, "portal")
        if key is None:
            return render(request, "signin.html", 401, area="portal")
        if key.role == "citizen":
            return error_page(request, Forbidden("The portal is for organisations; a citizen key opens the citizen "
                                                 "app."), "portal", own_page=True)
        citizen, purpose = form.get("citizen_id", "").strip(), form.get("purpose", "").strip() or None
        detail, action = form.get("detail", "").strip() or None, form.get("action", "lookup")
        try:
            if not citizen:
                raise _Invalid("Enter the citizen's id.")
            if action == "search":
                page = int(form["page"]) if re.fullmatch(r"[0-9]{1,9}", form.get("page", "")) else 1
                result = await run_in_threadpool(lambda: service.search(key, citizen, purpose, page=page))
            elif action == "loan":
                amount = _amount(detail)
                result = await run_in_threadpool(service.loan_quote, key, citizen, amount, purpose)
            elif action == "flight":
                result = await run_in_threadpool(service.flight_check, key, citizen, detail, purpose)
            elif action == "gate":
                result = await run_in_threadpool(service.subway_gate, key, citizen, detail, purpose)
            elif action == "profile":
                result = await run_in_threadpool(service.profile, key, citizen, purpose)
            elif action == "offers":
                result = await run_in_threadpool(service.offers, key, citizen, purpose)
            else:
                action = "lookup"
                result = await run_in_threadpool(service.lookup, key, citizen, purpose)
        except ServiceError as exc:
            if isinstance(exc, Unauthorized):
                return error_page(request, exc, "portal")
            return portal_page(request, key, exc.status, form=form, refused=exc.message,
                               refused_title=TITLES.get(exc.status, "Refused"))
        return portal_page(request, key, form=form, result=result, done_action=action)

    @router.post("/portal/appeals/{appeal_id}")
    async def portal_decide(request: Request, appeal_id: int):
        """An agency upholds or rejects an appeal."""
        try:
            key, form = await posted(request)
            if key is None:
                return render(request, "signin.html", 401, area="portal")
            await run_in_threadpool(service.decide_appeal, key, appeal_id, form.get("decision") == "uphold",
                                    form.get("note", "").strip() or None)
        except ServiceError as exc:
            return error_page(request, exc, "portal")
        return RedirectResponse("/portal?" + urlencode({"decided": appeal_id}), status_code=303)

    # -- analyst dashboard -------------------------------------------------------------------------

    async def dashboard_view(request: Request, template: str, view, *, own_page: bool = False,
                             **context) -> HTMLResponse:
        """A dashboard page: sign-in without a session, else `template` with `view(key)` (run on a
        thread: it reads the database), or the error as a page."""
        try:
            key = await run_in_threadpool(caller, request)
            if key is None:
                return render(request, "signin.html", area="dashboard")
            shown = await run_in_threadpool(view, key)
        except ServiceError as exc:
            return error_page(request, exc, "dashboard", own_page=own_page)
        return render(request, template, key=key, **context, **shown)

    @router.get("/dashboard", response_class=HTMLResponse)
    async def dashboard_page(request: Request):
        """Live class counts, event rates, consequences, wrongful attributions and appeals."""
        return await dashboard_view(request, "dashboard.html",
                                    lambda key: {"data": dashboard.data(key, _run_dir(request))}, own_page=True)

    @router.get("/dashboard/data")
    async def dashboard_data(request: Request):
        """The dashboard's figures and numbers as JSON, for its refresh."""
        try:
            key = await run_in_threadpool(caller, request)
            if key is None:
                raise Unauthorized("signed out: sign in to the dashboard again")
            data = await run_in_threadpool(dashboard.data, key, _run_dir(request))
        except ServiceError as exc:
            return JSONResponse(exc.detail(), status_code=exc.status)
        return JSONResponse(data)

    @router.get("/dashboard/citizens", response_class=HTMLResponse)
    async def dashboard_roster(request: Request):
        """The citizens of a class, region, group or consequence, paged and sorted; each one listed is logged."""
        return await dashboard_view(request, "roster.html",
                                    lambda key: dashboard.roster(key, dict(request.query_params)))

    @router.get("/dashboard/citizens/{citizen_id}", response_class=HTMLResponse)
    async def dashboard_citizen(request: Request, citizen_id: str, purpose: str | None = None):
        """One citizen's status and history, as the grant allows; logged like any look-up."""
        return await dashboard_view(request, "dashboard_citizen.html",
                                    lambda key: dashboard.citizen(key, citizen_id, purpose), status_text=STATUS_TEXT)

    @router.post("/dashboard/signin")
    async def dashboard_sign_in(request: Request):
        """Sign in to the dashboard."""
        return await sign_in(request, "dashboard")

    @router.post("/dashboard/signout")
    async def dashboard_sign_out(request: Request):
        """Sign out of the dashboard: the session ends, so its cookie is of no further use."""
        return await sign_out(request, "dashboard")

    return router


class _Invalid(ServiceError):
    status = 422


class _CrossSite(ServiceError):
    status = 403


FORGED = ("This form did not come from a page of this site, or from one older than your sign-in, "
          "so nothing was done")


def _same_origin(request: Request) -> bool:
    """Whether a POST came from a page of this site, by its Origin header (or Referer).

    Browsers send Origin with every form POST, "null" where they hide it; a client that sends
    neither header is no browser that another site's page could drive.
    """
    sender = request.headers.get("origin") or request.headers.get("referer")
    return sender is None or urlsplit(sender).netloc.lower() == request.url.netloc.lower()


def _check_sent_here(request: Request, form: dict[str, str], session_id: str) -> None:
    """Refuse (_CrossSite) a POST with a foreign Origin, or without the CSRF token of the session."""
    if not _same_origin(request) or not csrf_valid(session_id, form.get(CSRF_FIELD, "")):
        raise _CrossSite(FORGED)


def _amount(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        amount = float(text.replace(",", ""))
    except ValueError:
        raise _Invalid(f"The loan amount '{text}' is not a number.") from None
    if not 0 < amount <= 1e12:
        raise _Invalid("The loan amount must be above 0 and at most 1,000,000,000,000.")
    return amount


def _run_dir(request: Request) -> Path | None:
    # The simulation run loaded into the database (`db load`, the demo), for the simulated charts.
    return request.app.state.service.loaded_run


async def _form(request: Request) -> dict[str, str]:
    # URL-encoded forms are parsed here: the small bodies of these pages need no multipart library.
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise _Invalid(f"form larger than {MAX_FORM_BYTES:,} bytes")
    pairs = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in pairs.items()}


def _needed(disclosure: str) -> set[str]:
    """The grant fields of which a caller needs one for `disclosure` (access.DISCLOSURES)."""
    d = DISCLOSURES[disclosure]
    return set(d.needs or d.fields)


def _citizen_view(service: Service, key: ApiKey, everything: bool, chosen: dict[str, str]) -> dict:
    """What the citizen app shows, from the service's own look-ups (which check the grant): each
    part only where the citizen's grant has a field of it; the history filtered by `chosen`."""
    cid = key.citizen_id
    fields = set(service.access.grant_of("citizen").fields)
    status = service.lookup(key, cid) if fields & _needed("lookup") else {"citizen_id": cid}
    history = service.history(key, cid) if fields & _needed("history") else {}
    events = sorted(history.get("events", []), key=lambda e: (e["day"], e["event_id"]), reverse=True)
    options = {name: sorted({e[name] or "" for e in events}) for name in HISTORY_FILTERS}
    shown = [e for e in events if all(not chosen[n] or (e[n] or "") == chosen[n] for n in HISTORY_FILTERS)]
    listed = shown if everything else shown[:HISTORY_ROWS]
    # The key factors are the engine's largest few; the others are the rest of the counted rules.
    factors = {e["rule"] for e in events if e["status"] == "counted" and not e["voided"]}
    offers = service.offers(key, cid) if fields & _needed("offers") else None
    log = service.lookups(key, cid) if fields & _needed("lookups") else None
    seen = log["lookups"] if log else []
    # The app's own reads are logged too; the list shows the others, the count the citizen's own.
    others = [row for row in seen if row["role"] != "citizen"]
    appeals = service.list_appeals(key, limit=1_000_000, newest_first=True)
    open_events = {a["event_id"] for a in appeals if a["status"] == "open"}
    scored = status.get("class") is not None  # else under min_age, or not shown: nothing attached
    attached = service.consequence_rules.possible(service.policy.class_names.index(status["class"])) if scored else ()
    return {
        "status": status,
        "fields": fields,
        "reasons": history.get("reasons", []),
        "more_factors": max(0, len(factors) - len(history.get("reasons", []))),
        "months": [(month, list(rows)) for month, rows in groupby(listed, key=lambda e: e["date"][:7])],
        "n_events": len(events),
        "n_shown": len(shown),
        "n_listed": len(listed),
        "options": options,
        "chosen": chosen,
        "lookups": others,
        "offers": offers,
        "profile_users": [row for row in others if row["endpoint"] == "offers"],
        "log_shown": log is not None,
        "refused": log["refused"] if log else [],
        "own_views": len(seen) - len(others),
        "appeals": appeals,
        "open_events": open_events,
        "class_benefits": [c.consequence for c in attached if c.benefit],
        "class_sanctions": [c.consequence for c in attached if not c.benefit],
    }


_TODAY = re.compile(r"\btoday\b", re.IGNORECASE)


def on_date(reason: str | None, date: str, today: str) -> str | None:
    """A rule's reason said of an event of `date`: "today" becomes "on <date>" unless it is today."""
    if not reason or date == today:
        return reason
    return _TODAY.sub(lambda m: ("On " if m.group()[0].isupper() else "on ") + date, reason)


def undated(reason: str) -> str:
    """A rule's reason said of several events on several days: without its "today"."""
    text = re.sub(r"\s*\btoday\b", "", reason, flags=re.IGNORECASE).strip()
    return text[:1].upper() + text[1:]


def tour(policy: Policy, citizen: str | None) -> list[dict]:
    """The demo's guided steps: what to do, with which printed key, and where."""
    who = f"citizen {citizen}" if citizen else "the citizen"
    find = "?" + urlencode({"citizen_id": citizen}) if citizen else ""
    steps = [
        {"key": "citizen", "path": "/app",
         "text": f"Sign in to the citizen app as {who}: score, class, why, and what the class brings or costs."},
        {"key": "bank", "path": f"/portal{find}",
         "text": f"Look {who} up as the bank, stating a purpose (a mortgage application): a loan quote and "
                 "the reasons for its rate."},
        {"key": "citizen", "path": "/app#lookups",
         "text": "See the bank's look-up, with its purpose, under \"Who looked me up\" in the app."},
    ]
    platform = policy.grant_for("platform")
    if platform is not None and "offers" in platform.fields:
        steps.append({"key": "platform, then citizen", "path": f"/portal{find}",
                      "text": f"Open the offers for {who} as the shop group (\"Offers and profile\"): each offer with "
                              "the in-store camera records it was built from; then see in the app what the "
                              "profile holds and who used it."})
    if policy.appeals:
        steps.append({"key": "citizen, then agency", "path": "/app#history",
                      "text": "Contest an event in the app's history, then decide the appeal in the portal "
                              "with the agency key."})
    else:
        steps.append({"key": "citizen, then agency", "path": "/app#appeals",
                      "text": f"Contest an event: policy {policy.name} allows no appeals; start the demo "
                              "with: socialcredit demo --policy accountable; then contest an event in the app, "
                              "and decide it in the portal with the agency key."})
    return steps


def _open_appeals(service: Service, key: ApiKey) -> list[dict]:
    # Shown to agency keys only (the caller checks the role; so does the service); deciding goes
    # through the service.
    return service.list_appeals(key, status="open", limit=100)


_PLOTLY: list[str] = []


def _plotly_js() -> str:
    if not _PLOTLY:  # about 4.5 MB of text: built once, on first use
        from plotly.offline import get_plotlyjs

        _PLOTLY.append(get_plotlyjs())
    return _PLOTLY[0]
