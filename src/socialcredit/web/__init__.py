"""Web pages on the service's FastAPI app: citizen app, third-party portal, analyst dashboard."""

from socialcredit.web._pages import page_routes

__all__ = ["page_routes"]
