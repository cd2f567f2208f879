"""Analysis: audits of policies and measurements of what a run did to people."""

from socialcredit.analysis._audit import FLAGS, Audit, audit_policy

__all__ = ["FLAGS", "Audit", "audit_policy"]
