"""Enrollment: who this worker is to the control plane, and the token that proves it.

Token lifecycle
    start       token = WORKER_AUTH_TOKEN_FILE's content if the file holds one, else
                WORKER_AUTH_TOKEN, else none. The file wins because it is only ever written with
                a token the control plane issued later than the one provisioned in the env.
    register    under the token file's lock: re-read the file (another agent on this machine
                may have bootstrapped or rotated it), POST register with `Bearer <token>` if
                any; a reply carrying `bootstrap_token` (first registration, or a control plane
                that lost its store) replaces the token in memory and in the file.
    heartbeat   `Bearer <token>`; a 401/404 reply means the control plane forgot this worker:
                `forget()` and register again (the heartbeat loop does that, with backoff).
The token is never logged; logs say "token from file", "bootstrap token received".
"""

from __future__ import annotations

import logging

from fleet.schemas import RegisterRequest, RegisterResponse
from worker_agent.control_plane_client import ControlPlaneClient
from worker_agent.errors import TokenFileError
from worker_agent.tokens import TokenFile

log = logging.getLogger(__name__)


class Enrollment:
    def __init__(self, request: RegisterRequest, client: ControlPlaneClient, *,
                 token: str | None = None, token_file: TokenFile | None = None) -> None:
        self.request = request
        self.client = client
        self.token = token
        self.token_file = token_file
        self.worker_id: str | None = None
        self.heartbeat_interval_s: float | None = None
        self._file_loaded = False

    @property
    def enrolled(self) -> bool:
        return self.worker_id is not None

    async def load(self) -> None:
        """Read the token file once at start (before the first registration)."""
        if self.token_file is None or self._file_loaded:
            return
        stored = await self.token_file.read()
        self._file_loaded = True
        if stored:
            if self.token and stored != self.token:
                log.info("using the worker token from %s (newer than WORKER_AUTH_TOKEN)",
                         self.token_file.path)
            else:
                log.info("worker token loaded from %s", self.token_file.path)
            self.token = stored

    async def register(self) -> RegisterResponse:
        if self.token_file is None:
            response = await self.client.register(self.request, self.token)
            self._accept(response)
            return response
        await self.load()
        async with self.token_file.locked():
            stored = await self.token_file.read()
            if stored and stored != self.token:
                log.info("worker token in %s changed (another agent re-enrolled); using it",
                         self.token_file.path)
                self.token = stored
            response = await self.client.register(self.request, self.token)
            # Accept before writing: the control plane issues a bootstrap token once, so losing
            # it because the disk is full would lock this worker out until an operator steps in.
            self._accept(response)
            if response.bootstrap_token:
                try:
                    await self.token_file.write(response.bootstrap_token)
                except TokenFileError as exc:
                    log.error("could not save the worker token (%s); it is kept in memory, a "
                              "restart will need the control plane to issue a new one", exc)
        return response

    def _accept(self, response: RegisterResponse) -> None:
        if response.bootstrap_token:
            log.info("bootstrap token received from the control plane%s",
                     f"; saved to {self.token_file.path} (mode 0600)" if self.token_file else
                     " (kept in memory only: WORKER_AUTH_TOKEN_FILE is not set)")
            self.token = response.bootstrap_token
        self.worker_id = response.worker_id
        self.heartbeat_interval_s = response.heartbeat_interval_s

    def forget(self) -> None:
        """The control plane no longer knows this worker: the next step registers again."""
        self.worker_id = None
