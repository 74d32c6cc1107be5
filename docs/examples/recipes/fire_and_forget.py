"""Fire and forget, without a task queue: a sign-up that sends its welcome email in the
background, as a workflow instead of a Celery task.

Before, with Celery::

    @celery.task(autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
    def send_welcome_email(user_id, email): ...

    send_welcome_email.delay(user.id, user.email)

After: the retries are the step's (``[[workflows]] retries`` in durableflow.toml), the
job survives restarts of the host, and it can be looked up, paused or restarted like any
instance. The instance id ``welcome-<user id>`` makes the call safe to repeat: the client
retries it on a 503 or a dropped connection, and a second sign-up of the same user
cannot send a second email.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING

from workflows import Welcome

from durableflow import InstanceExistsError

if TYPE_CHECKING:
    from env import TypedSyncClient

_user_ids = itertools.count(1)  # stands in for your database's sequence


def sign_up(client: TypedSyncClient, email: str, user_id: int | None = None) -> int:
    """Create the user and start the welcome email; returns at once, the email follows."""
    user_id = next(_user_ids) if user_id is None else user_id
    welcome = client.workflow("welcome-email")
    # InstanceExistsError: already started for this user (a double submit, or a retry)
    with contextlib.suppress(InstanceExistsError):
        welcome.create(id=f"welcome-{user_id}", params=Welcome(user_id=user_id, email=email))
    return user_id
