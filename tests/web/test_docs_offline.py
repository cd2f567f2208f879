"""/docs in Chromium with every address but the server's blocked: the app serves it whole."""

import os
import subprocess

import pytest

from .conftest import SOCIALCREDIT, free_port, stop, wait_for


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    port = free_port()
    log = tmp / "server.log"
    proc = subprocess.Popen([SOCIALCREDIT, "serve", "--db", f"sqlite:///{tmp}/sc.db", "--policy", "taz-2018",
                             "--port", str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "NO_COLOR": "1"})
    url = f"http://127.0.0.1:{port}"
    wait_for(url, proc, log)
    yield url
    stop(proc)


def offline(page, server_url: str) -> list[str]:
    """Abort every request to another origin, as a machine with no network would; return their URLs."""
    blocked = []

    def route(request_route):
        if request_route.request.url.startswith(server_url + "/"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    page.route("**/*", route)
    return blocked


def test_the_interactive_docs_work_offline_under_the_pages_policy(server_url, page):
    blocked = offline(page, server_url)
    violations = []
    page.on("console", lambda msg: "Content Security Policy" in msg.text and violations.append(msg.text))
    page.set_default_timeout(15_000)
    page.goto(server_url + "/docs")
    page.get_by_text("/api/events", exact=True).first.wait_for()  # the operations are listed
    page.wait_for_load_state("networkidle")
    assert page.get_by_text("socialcredit live service").first.is_visible()
    assert blocked == [] and violations == [] and page.errors == []
    assert page.request.get(server_url + "/redoc").status == 404  # not served (see _app)
