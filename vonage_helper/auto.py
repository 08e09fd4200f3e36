"""AUTO_WEBHOOKS=ngrok: while `make run` serves, the application's voice webhooks follow the ngrok tunnel."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable

from vonage import Vonage

from config import Settings
from vonage_helper.clients import DASHBOARD, account_client, require
from vonage_helper.errors import HelperError
from vonage_helper.ngrok import NgrokError, find_tunnel
from vonage_helper.webhooks import point_webhooks, restore_webhooks

# How often the tunnel is looked up again: a free ngrok URL changes only when the agent restarts.
POLL_SECONDS = 3.0


def _say(line: str, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


class AutoWebhooks:
    """Points the application at the ngrok tunnel on start(), again whenever the tunnel's URL changes, and puts
    the earlier webhooks back on stop(). Every Vonage request is made under one lock, so stop() never races a
    re-point: once stopping, nothing is pointed again. The record of the earlier webhooks is kept in the instance
    folder (INSTANCE_PATH), as `flask webhooks` keeps it, so that `flask webhooks --restore` finds it."""

    def __init__(
        self,
        settings: Settings,
        client: Vonage | None = None,
        say: Callable[..., None] = _say,
        poll_seconds: float = POLL_SECONDS,
    ):
        self.settings = settings
        self.client = client
        self.say = say
        self.poll_seconds = poll_seconds
        self.pointed_at: str | None = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.last_problem: str | None = None

    def start(self) -> None:
        """Point the application at the tunnel, and follow it. Problems are one warning line: serving goes on."""
        try:
            require(self.settings.application_id, "VONAGE_APPLICATION_ID", f"copy it from {DASHBOARD}")
            self.client = self.client or account_client(self.settings)
            self._follow_once()
        except NgrokError as error:
            # The credentials are there; the tunnel may come later, and is pointed at when it does.
            self.last_problem = error.message
            waiting = "the application is pointed here when a tunnel appears"
            self.say(f"warning: AUTO_WEBHOOKS=ngrok: {error.message}; {waiting}", True)
        except HelperError as error:
            self.say(f"warning: AUTO_WEBHOOKS=ngrok: {error.message}; serving without pointing the application", True)
            return
        self.thread = threading.Thread(target=self._follow, name="auto-webhooks", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop following, and put back the webhooks the application had, unless someone changed them meanwhile."""
        self.stopping.set()
        with self.lock:
            if self.pointed_at is None:
                return
            try:
                changes = restore_webhooks(
                    self.settings, self.settings.instance_path, self.client, only_if_at=self.pointed_at
                )
            except HelperError as error:
                hint = "" if "--restore" in error.message else "; run flask webhooks --restore once it can"
                self.say(f"warning: AUTO_WEBHOOKS=ngrok: earlier webhooks not put back: {error.message}{hint}", True)
                return
            except Exception as error:  # whatever it is, shutdown must go on to stop the rest of the server
                self.say(
                    f"warning: AUTO_WEBHOOKS=ngrok: earlier webhooks not put back ({error!r}); run flask webhooks --restore",
                    True,
                )
                return
            finally:
                self.pointed_at = None
        self.say("AUTO_WEBHOOKS=ngrok: put the application's earlier voice webhooks back:")
        for line in changes:
            self.say(f"  {line}")

    def _follow(self) -> None:
        # Ctrl-C and SIGTERM must reach the main thread, where granian waits for them: a signal the kernel hands to
        # this thread instead would never wake it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while not self.stopping.wait(self.poll_seconds):
            try:
                self._follow_once()
                self.last_problem = None
            except HelperError as error:
                # Said once per problem, not every few seconds while it lasts.
                if error.message != self.last_problem:
                    self.last_problem = error.message
                    self.say(f"warning: AUTO_WEBHOOKS=ngrok: {error.message}", True)

    def _follow_once(self) -> None:
        tunnel = find_tunnel(self.settings)
        if tunnel.public_url == self.pointed_at:
            return
        with self.lock:
            if self.stopping.is_set():
                return
            changes = point_webhooks(self.settings, tunnel.public_url, self.client, self.settings.instance_path)
            self.pointed_at = tunnel.public_url
        self.say(f"AUTO_WEBHOOKS=ngrok: pointed the application's voice webhooks at {tunnel.public_url}:")
        for line in changes:
            self.say(f"  {line}")
        if tunnel.warning(self.settings.port):
            self.say(f"warning: {tunnel.warning(self.settings.port)}", True)
