"""``kiln serve``'s HTTP API: the app, its guards (tokens, body size, errors, audit) and the
sandbox, admin and health routes. Exec, processes, code, files and snapshots are in
shim/sandbox/api_io.py. The OpenAPI description is served at /openapi.json.

Every ``/v1`` route needs ``Authorization: Bearer TOKEN``; anything else is a
401. Errors are JSON ``{"error": ..., "hint": ...}`` with a 4xx status for what
the client got wrong (400 bad input or bad JSON, 404 unknown or ended sandbox,
409 busy, 413 body too large, 422 a field out of its type, 429 quota) and 5xx
for what the server could not do. No error answers with a traceback.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shim.sandbox.config import MiB, ServerConfig
from shim.sandbox.errors import ApiError
from shim.sandbox.manager import Manager
from shim.sandbox.models import CreateSandbox, KillAllBody, SandboxInfo, TimeoutBody
from shim.sandbox.observe import CONTENT_TYPE_LATEST, Observer
from shim.sandbox.tokens import Token, find_token

__all__ = ["make_app"]

JSON_BODY_MAX = 8 * MiB
"""Bytes a JSON body may have (code and stdin included); file uploads have --max-body-mb."""


def _error(status: int, message: str, hint: str | None = None, detail: Any = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


class _Guard:
    """Pure ASGI middleware: body size limits, then the audit record of every /v1 call."""

    def __init__(self, app: Any, obs: Observer, file_max: int) -> None:
        self.app = app
        self.obs = obs
        self.file_max = file_max

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        limit = self.file_max if path.endswith("/files") and scope.get("method") == "PUT" \
            else JSON_BODY_MAX
        status = [500]
        state = scope.setdefault("state", {})

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if scope.get("method") in ("POST", "PATCH") and path.startswith("/v1"):
            _json_by_default(scope)
        length = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = -1
        if length is not None and (length < 0 or length > limit):
            resp = _error(413, f"the request body is {length} bytes; this route takes at most "
                          f"{limit}", hint="send less (files: split them, or raise --max-body-mb)")
            await resp(scope, receive, sending)
        else:
            got = [0]

            async def receiving() -> dict:
                message = await receive()
                if message["type"] == "http.request":
                    got[0] += len(message.get("body", b""))
                    if got[0] > limit:
                        raise _TooLarge(limit)
                return message
            try:
                await self.app(scope, receiving, sending)
            except _TooLarge as e:
                resp = _error(413, f"the request body is larger than {e.limit} bytes",
                              hint="send less (files: split them, or raise --max-body-mb)")
                await resp(scope, receive, sending)
        if path.startswith("/v1"):
            route = scope.get("route")
            template = getattr(route, "path", None) or path
            sid = (scope.get("path_params") or {}).get("sid")
            self.obs.call(state.get("who", "-"), scope.get("method", "?"), template, status[0],
                          sid, (time.perf_counter() - t0) * 1000, state.get("error"))


def _json_by_default(scope: dict) -> None:
    """A JSON route's body is JSON whatever Content-Type says (curl -d sends a form type):
    a body that is not JSON is then a clear 400."""
    headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"content-type"]
    given = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
    if b"json" not in given:
        headers.append((b"content-type", b"application/json"))
        scope["headers"] = headers


class _TooLarge(BaseException):
    def __init__(self, limit: int) -> None:
        self.limit = limit


def make_app(manager: Manager, cfg: ServerConfig, obs: Observer) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await manager.start()
        pools = ", ".join(f"{n}={s}" for n, s in cfg.pools) or "none"
        print(f"kiln serve: listening on http://{cfg.host}:{cfg.port} (images: "
              f"{', '.join(manager.images)}; pools: {pools}; state {cfg.state})",
              file=sys.stderr, flush=True)
        try:
            yield
        finally:
            await manager.stop()

    app = FastAPI(title="kiln serve", version="1",
                  description="Agent sandboxes: recompiled container images under vkernel, "
                              "forked from a loaded zygote. See docs/sandboxes.md.",
                  lifespan=lifespan)
    app.state.manager = manager
    app.state.cfg = cfg
    app.state.obs = obs

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        request.state.error = exc.message
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.message, exc.hint, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            msg = "the request body is not valid JSON"
            request.state.error = msg
            first = next(e for e in errors if e.get("type") == "json_invalid")
            return _error(400, msg, hint="send a JSON object with Content-Type: application/json",
                          detail=str(first.get("ctx", {}).get("error", ""))[:200])
        detail = [{"field": ".".join(str(x) for x in e.get("loc", ()) if x != "body"),
                   "problem": e.get("msg", "")} for e in errors][:20]
        text = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in detail)
        request.state.error = text
        return _error(422, f"invalid request: {text}", detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            msg = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, msg, hint="see /openapi.json for the routes")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        import traceback
        traceback.print_exc()
        request.state.error = f"{type(exc).__name__}: {exc}"
        return _error(500, f"internal error: {type(exc).__name__}: {exc}",
                      hint="this is a bug in kiln serve; the server log has the details")

    async def auth(request: Request) -> Token:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        token = find_token(manager.tokens, given.strip()) \
            if scheme.lower() == "bearer" and given.strip() else None
        if token is None:
            raise ApiError(401, "missing or wrong bearer token" if header else
                           "this route needs Authorization: Bearer TOKEN",
                           hint="send the header 'Authorization: Bearer TOKEN' with a token "
                                "from the server's --token-file")
        request.state.who = token.name
        return token

    async def admin(token: Token = Depends(auth)) -> Token:
        if not token.admin:
            raise ApiError(403, f"token {token.name} is not an admin token",
                           hint="mark it 'admin' in the token file")
        return token

    v1 = APIRouter(prefix="/v1")

    @v1.post("/sandboxes", status_code=201, response_model=SandboxInfo,
             summary="Create a sandbox (from the warm pool when one is ready)")
    async def create(body: CreateSandbox, token: Token = Depends(auth)) -> dict:
        sb = await manager.create(token, body)
        return sb.info(live=False)

    @v1.get("/sandboxes", summary="List your sandboxes (an admin token sees all)")
    async def list_sandboxes(token: Token = Depends(auth)) -> dict:
        return {"sandboxes": [sb.info() for sb in manager.visible(token)]}

    @v1.get("/sandboxes/{sid}", response_model=SandboxInfo, summary="One sandbox")
    async def show(sid: str, token: Token = Depends(auth)) -> dict:
        return manager.get(sid, token).info()

    @v1.delete("/sandboxes/{sid}", summary="Kill and remove a sandbox")
    async def delete(sid: str, token: Token = Depends(auth)) -> dict:
        manager.get(sid, token)
        await manager.delete(sid, f"deleted by {token.name}")
        return {"id": sid, "deleted": True}

    @v1.post("/sandboxes/{sid}/timeout", response_model=SandboxInfo,
             summary="Reset the sandbox's clock to timeout_s from now")
    async def timeout(sid: str, body: TimeoutBody, token: Token = Depends(auth)) -> dict:
        sb = manager.get(sid, token)
        manager.reset_timeout(sb, body.timeout_s)
        return sb.info()

    @v1.post("/admin/kill-all", summary="Kill every sandbox (the kill switch)")
    async def kill_all(body: KillAllBody | None = None, token: Token = Depends(admin)) -> dict:
        refuse = bool(body and body.refuse_new)
        if refuse:
            manager.refuse_new = True
        n = await manager.kill_all(f"kill-all by {token.name}")
        return {"killed": n, "refusing_new": manager.refuse_new}

    @v1.post("/admin/accept", summary="Accept new sandboxes again after kill-all")
    async def accept(token: Token = Depends(admin)) -> dict:
        manager.refuse_new = False
        return {"refusing_new": False}

    from shim.sandbox.api_io import io_routes
    io_routes(v1, manager, cfg, auth)
    app.include_router(v1)

    @app.get("/healthz", summary="Liveness: zygotes, pools, sandboxes, and sandboxes lost "
             "at a restart")
    async def healthz() -> dict:
        return manager.health()

    def collect() -> None:
        by_image: dict[str, int] = {name: 0 for name in manager.images}
        total = 0
        for sb in manager.sandboxes.values():
            by_image[sb.image] = by_image.get(sb.image, 0) + 1
            total += sb.memory_used() or 0
        for name, n in by_image.items():
            obs.alive.labels(name).set(n)
        for name, pool in manager.pools.items():
            obs.pool_ready.labels(name).set(len(pool.ready))
        obs.memory.set(total)
    obs.on_collect(collect)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(obs.metrics(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        from shim.sandbox.page import STATUS_PAGE
        return HTMLResponse(STATUS_PAGE, headers={"Cache-Control": "no-store",
                                                  "Content-Security-Policy": _CSP})

    app.add_middleware(_Guard, obs=obs, file_max=cfg.max_body_mb * MiB)
    return app


_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
