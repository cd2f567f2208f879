"""Analysis: audits of policies, measurements of what a run did to people, and the run beside the
published record (validate, calibrate)."""


from socialcredit._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "FLAGS": "socialcredit.analysis._audit",
    "Audit": "socialcredit.analysis._audit",
    "audit_policy": "socialcredit.analysis._audit",
    "CalibrationError": "socialcredit.analysis._calibrate",
    "Fit": "socialcredit.analysis._calibrate",
    "Free": "socialcredit.analysis._calibrate",
    "calibrate": "socialcredit.analysis._calibrate",
    "parse_free": "socialcredit.analysis._calibrate",
    "ReportError": "socialcredit.analysis._report",
    "write_report": "socialcredit.analysis._report",
    "Comparison": "socialcredit.analysis._validate",
    "Targets": "socialcredit.analysis._validate",
    "ValidationFailure": "socialcredit.analysis._validate",
    "compare_run": "socialcredit.analysis._validate",
    "load_targets": "socialcredit.analysis._validate",
})

__all__ = ["Audit", "CalibrationError", "Comparison", "FLAGS", "Fit", "Free", "ReportError", "Targets",
           "ValidationFailure", "audit_policy", "calibrate", "compare_run", "load_targets", "parse_free",
           "write_report"]
