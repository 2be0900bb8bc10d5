"""Errors of ``kiln serve`` with the HTTP status each is answered with."""
from __future__ import annotations

from formats.errors import KilnError

__all__ = ["ApiError", "not_found", "bad_request", "conflict", "quota", "unavailable"]


class ApiError(KilnError):
    """An error a client caused or must know about: answered with ``status`` and a JSON body
    ``{"error": message, "hint": hint}``."""

    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def not_found(message: str, hint: str | None = None) -> ApiError:
    return ApiError(404, message, hint)


def bad_request(message: str, hint: str | None = None) -> ApiError:
    return ApiError(400, message, hint)


def conflict(message: str, hint: str | None = None) -> ApiError:
    return ApiError(409, message, hint)


def quota(message: str, hint: str | None = None) -> ApiError:
    return ApiError(429, message, hint)


def unavailable(message: str, hint: str | None = None) -> ApiError:
    return ApiError(503, message, hint)
