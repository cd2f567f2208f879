"""One exception tree: every error a user's input can cause is a `SocialCreditError`.

Its message says what is wrong and where (the field, row or line). The boundaries map it once:
the command line prints it and exits 1 (cli._common), the HTTP service answers with its status
(service.ServiceError's subclasses say which).
"""


class SocialCreditError(Exception):
    """Bad input or a state that refuses it: the message is for the person who gave it."""
