"""The live service: ingestion, look-ups under access grants, consequences, appeals, over a database.

Conventions (documented assumptions):

- The service day is a setting stored in the database: `serve --day N` and `db load` move it
  forward, never back. Events after it are refused (422); scores are as of it, and moving it
  re-scores the citizens whose points expire by then.
- A batch is acknowledged (2xx) once it is durable in the inbox; with `wait=true` (the default)
  the answer comes once the scores are updated (200), else at once (202).
- Camera events have source "camera" and source_ref "cam-<region>-<placetype>-<n>"; the profile
  counts sightings by place type. Ages come from citizens.parquet (`age`, or `age_estimate` and
  `age_uncertainty`); with `age` only, the estimate wavers by +-6 / sqrt(sightings + 1) years.
- Benefits apply to their class and better, sanctions to their class and worse, once the citizen
  has been in the benefit (sanction) classes for `held_days` (engine.CompiledConsequences, the
  simulator's meaning too); class changes are dated by the service day on which the service saw
  them, or by the run's own days for a run loaded with `db load`. Decisions follow the effects: a
  subway gate stops a citizen under a `gate_stop` sanction, an airline refuses one under a
  `flight_ban`, a bank quotes 4% plus 0.5 points per class below the top, moved by `loan_price`
  benefits and sanctions, refused under a `loan_refusal`.
- X-Purpose is required where the role's grant says `purpose_required`.
"""


from socialcredit._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "create_app": "socialcredit.service._app",
    "DEFAULT_URL": "socialcredit.service._db",
    "Database": "socialcredit.service._db",
    "Conflict": "socialcredit.service._errors",
    "Forbidden": "socialcredit.service._errors",
    "Invalid": "socialcredit.service._errors",
    "NotFound": "socialcredit.service._errors",
    "ServiceError": "socialcredit.service._errors",
    "TooLarge": "socialcredit.service._errors",
    "Unauthorized": "socialcredit.service._errors",
    "serve_http": "socialcredit.service._http",
    "SENDING_ROLES": "socialcredit.service._keys",
    "ApiKey": "socialcredit.service._keys",
    "authenticate": "socialcredit.service._keys",
    "create_key": "socialcredit.service._keys",
    "revoke_key": "socialcredit.service._keys",
    "Service": "socialcredit.service._service",
    "Settings": "socialcredit.service._service",
})

__all__ = [
    "ApiKey",
    "Conflict",
    "DEFAULT_URL",
    "Database",
    "Forbidden",
    "Invalid",
    "NotFound",
    "SENDING_ROLES",
    "Service",
    "ServiceError",
    "Settings",
    "TooLarge",
    "Unauthorized",
    "authenticate",
    "create_app",
    "create_key",
    "revoke_key",
    "serve_http",
]
