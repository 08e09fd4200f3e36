"""The record of an application's voice webhooks as they were before this tool pointed them here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from vonage_helper.errors import EXIT_SETTINGS, HelperError


class WebhookBackup:
    """One application's record: {"application_id", "saved_at", "webhooks": {name: setting or None},
    "pointed_at": [every base URL this tool has pointed it at since]}, in a file only its owner can read.

    `folder` is the instance folder (INSTANCE_PATH): the app's instance_path for `flask webhooks`, the settings'
    instance_path for AUTO_WEBHOOKS, which has no app to ask."""

    def __init__(self, application_id: str, folder: Path | str):
        self.application_id = application_id
        self.path = Path(folder) / f"webhooks-backup-{application_id}.json"

    def exists(self) -> bool:
        return self.path.is_file()

    def read(self) -> dict:
        """The record; raises HelperError when there is none or it cannot be read."""
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise HelperError(
                f"no record of earlier webhooks for application {self.application_id} at {self.path}; "
                "nothing to restore (a record is made when flask webhooks or AUTO_WEBHOOKS changes them)",
                EXIT_SETTINGS,
            ) from None
        except (OSError, ValueError) as error:
            raise HelperError(f"cannot read {self.path} ({error}); fix or delete it", EXIT_SETTINGS) from None
        if not isinstance(record, dict) or not isinstance(record.get("webhooks"), dict):
            raise HelperError(f"{self.path} is not a webhooks record; fix or delete it", EXIT_SETTINGS)
        record.setdefault("pointed_at", [])
        return record

    def save(self, webhooks: dict[str, dict | None], pointed_at: list[str]) -> None:
        record = {
            "application_id": self.application_id,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "webhooks": webhooks,
            "pointed_at": pointed_at,
        }
        self._write(record)

    def add_pointed_at(self, record: dict, base: str) -> None:
        if base not in record["pointed_at"]:
            record["pointed_at"].append(base)
            self._write(record)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self, record: dict) -> None:
        # Created 0600 from the start (not chmod-ed afterwards), and swapped in whole, so a crash leaves the old one.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        try:
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(descriptor, 0o600)  # a leftover partial file keeps its old mode through O_CREAT
            with os.fdopen(descriptor, "w") as file:
                json.dump(record, file, indent=2)
                file.write("\n")
            os.replace(partial, self.path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise HelperError(
                f"cannot write {self.path} ({error.strerror}); check the instance folder's permissions", EXIT_SETTINGS
            ) from None
