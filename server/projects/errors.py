"""Domain errors of the projects API; each is a ``ServerError``, so the server's one handler maps it."""

from __future__ import annotations

from clicksam.errors import UsageError
from clicksam.server.errors import ServerError


class NotFoundError(ServerError):
    """No such project, image or annotation set (404)."""

    status_code = 404


class ConflictError(ServerError):
    """A project name in use, or a save based on a stale version (409)."""

    status_code = 409


class InvalidInputError(ServerError):
    """A request body that is well-formed JSON but breaks a rule (422); the message says which."""

    status_code = 422


class UnauthorizedError(ServerError):
    """No or a wrong bearer token on a server that requires one (401)."""

    status_code = 401


class AuthConfigError(UsageError):
    """The server would listen beyond loopback with nobody's token required (refuses to start)."""
