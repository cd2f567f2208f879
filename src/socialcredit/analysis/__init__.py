"""Analysis: audits of policies, measurements of what a run did to people, and the run beside the
published record (validate, calibrate)."""

from socialcredit.analysis._audit import FLAGS, Audit, audit_policy
from socialcredit.analysis._calibrate import CalibrationError, Fit, Free, calibrate, parse_free
from socialcredit.analysis._report import ReportError, write_report
from socialcredit.analysis._validate import Comparison, Targets, ValidationFailure, compare_run, load_targets

__all__ = ["Audit", "CalibrationError", "Comparison", "FLAGS", "Fit", "Free", "ReportError", "Targets",
           "ValidationFailure", "audit_policy", "calibrate", "compare_run", "load_targets", "parse_free",
           "write_report"]
