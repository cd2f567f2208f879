"""Analysis: audits of policies and measurements of what a run did to people."""

from socialcredit.analysis._audit import FLAGS, Audit, audit_policy
from socialcredit.analysis._report import ReportError, write_report

__all__ = ["Audit", "FLAGS", "ReportError", "audit_policy", "write_report"]
