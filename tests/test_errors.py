"""One exception tree: every error bad input causes is a SocialCreditError, mapped once per boundary."""

import pytest
from typer.testing import CliRunner

from socialcredit.analysis import CalibrationError, ReportError, ValidationFailure
from socialcredit.cli import app
from socialcredit.errors import SocialCreditError
from socialcredit.events import EventError
from socialcredit.policy import PolicyError
from socialcredit.service import Conflict, Forbidden, Invalid, NotFound, ServiceError, TooLarge, Unauthorized
from socialcredit.simulation import SimulationError


@pytest.mark.parametrize("error", [PolicyError, EventError, SimulationError, ReportError, ValidationFailure,
                                   CalibrationError, ServiceError, Unauthorized, Forbidden, NotFound,
                                   Conflict, TooLarge, Invalid])
def test_every_error_of_bad_input_is_a_social_credit_error(error):
    assert issubclass(error, SocialCreditError)


@pytest.mark.parametrize("args, message", [
    (["policy", "show", "no-such-policy"], "no preset or file named 'no-such-policy'"),
    (["simulate", "-n", "0", "-d", "1", "-s", "1", "--out", "x"], "--population must be at least 1 (got 0)"),
    (["report", "."], "not a run folder"),
    (["keys", "revoke", "nobody", "--db", "sqlite:///{tmp}/k.db"], "no key named 'nobody'"),
])
def test_the_command_line_prints_the_message_and_exits_1(tmp_path, args, message):
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1, result.output
    assert result.output.strip().startswith("error: ") and message in " ".join(result.output.split())
