"""Cross-site writes (issue #24): with signatures off, a web page on another site must not make a visitor's
browser post events or place calls through the server. Chromium opens a page served by the test on another port
(same-site) and another host name (cross-site); the page fires an event with fetch, an answer request with a form
and another with an image; the server must refuse each (it sees Origin or Sec-Fetch-Site) and store nothing.
"""

import http.server
import threading

import pytest
from sqlalchemy import func, select

from calllog.schema import Database, answers, events
from support.browser import CHROMIUM_ARGS, chromium_path
from support.production import wait_until
from support.servers import free_port, run_server

playwright_api = pytest.importorskip("playwright.sync_api")

ATTACK = """<!doctype html><title>attack</title>
<iframe name="sink"></iframe>
<form id="call" method="post" action="{server}/voice/answer" target="sink">
  <input name="to" value="447700900999"><input name="from_user" value="Alice">
  <input name="conversation_uuid" value="CON-cross-form"><input name="uuid" value="cross-form">
</form>
<img src="{server}/voice/answer?to=447700900999&amp;from_user=Alice&amp;conversation_uuid=CON-cross-img">
<script>
fetch("{server}/voice/event", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{status: "started", uuid: "cross-fetch", conversation_uuid: "CON-cross-fetch",
                         timestamp: "2026-12-07T00:00:00Z"}})}})
  .finally(() => {{ document.getElementById("call").submit(); document.title = "sent"; }});
</script>
"""


def attacker_site(server_url: str) -> tuple[http.server.ThreadingHTTPServer, int]:
    page = ATTACK.format(server=server_url).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    port = free_port()
    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site, port


def stored(database_url: str) -> tuple[int, int]:
    database = Database(database_url)
    try:
        with database.engine.connect() as connection:
            return tuple(
                connection.execute(select(func.count()).select_from(t)).scalar_one() for t in (events, answers)
            )
    finally:
        database.close()


@pytest.mark.parametrize("site_host", ["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def test_a_web_page_cannot_make_a_browser_write_through_the_voice_routes(tmp_path, site_host):
    executable = chromium_path()
    database_url = f"sqlite:///{tmp_path / 'calls.db'}"
    log = tmp_path / "server.log"
    with run_server(log, DATABASE_URL=database_url) as server:
        site, port = attacker_site(server)
        try:
            with playwright_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(f"http://{site_host}:{port}/")
                playwright_api.expect(page).to_have_title("sent", timeout=10_000)
                wait_until(lambda: log.read_text().count("refused a browser's request") >= 3, 10, "3 refusals")
                browser.close()
        finally:
            site.shutdown()
        refusals = [line for line in log.read_text().splitlines() if "refused a browser's request" in line]
    assert len(refusals) == 3, refusals
    assert any("/voice/event" in line for line in refusals) and any("/voice/answer" in line for line in refusals)
    assert stored(database_url) == (0, 0)
