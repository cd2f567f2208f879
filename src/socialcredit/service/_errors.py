"""Errors of the service core; the HTTP layer maps each to its status code with the same message."""

from __future__ import annotations

from socialcredit.errors import SocialCreditError


class ServiceError(SocialCreditError):
    """A request the service refuses; `status` is the HTTP status that goes with it."""

    status = 400

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        self.message = message
        self.row = row
        self.field = field
        super().__init__(message)

    def detail(self) -> dict:
        """The JSON error body."""
        out: dict = {"error": self.message}
        if self.row is not None:
            out["row"] = self.row
        if self.field is not None:
            out["field"] = self.field
        return out


class Unauthorized(ServiceError):
    """No key, or an unknown or revoked key."""

    status = 401


class Forbidden(ServiceError):
    """The key's role or binding does not allow this."""

    status = 403


class NotFound(ServiceError):
    """No such citizen, event or appeal."""

    status = 404


class Conflict(ServiceError):
    """The request contradicts the current state (e.g. an appeal decided twice)."""

    status = 409


class TooLarge(ServiceError):
    """A body or batch beyond the configured limits."""

    status = 413


class Invalid(ServiceError):
    """Input that does not validate; names the row and field where it can."""

    status = 422
