"""``kiln serve``: images resolved, the state directory made, then uvicorn runs the API.

How the pieces fit::

    client ──HTTP──► api.py / api_io.py (FastAPI on uvicorn)
                        │ manager.py: sandboxes, quotas, clocks, records
                        │ zygotes.py: one zygote process per image, warm pools
                        ▼
                 zygote.py (guest code loaded) ──fork──► agent.py (pid 1 of a sandbox)
                                                            └─fork──► guest.py (one exec)

The server talks to zygotes and sandboxes over seqpacket channels
(channel.py); a sandbox's processes' pipes are handed to the server, which
reads them itself (procs.py).
"""
from __future__ import annotations

import os
import sys

from formats.errors import KilnError
from shim.sandbox.config import ServerConfig
from shim.sandbox.images import ImageSpec, resolve_image
from shim.sandbox.tokens import Token

__all__ = ["run_server", "build_app"]


def build_app(cfg: ServerConfig, tokens: tuple[Token, ...], specs: list[ImageSpec]):
    """The ASGI app (images resolved now; zygotes start with the app's lifespan)."""
    from shim.sandbox.api import make_app
    from shim.sandbox.manager import Manager
    from shim.sandbox.observe import Observer
    from vkernel.statedir import _private_dir
    os.close(_private_dir(None, cfg.state, "the server's state directory"))
    images = [resolve_image(s) for s in specs]
    obs = Observer(cfg.audit_path)
    manager = Manager(cfg, tokens, images, obs)
    return make_app(manager, cfg, obs)


def run_server(cfg: ServerConfig, tokens: tuple[Token, ...], specs: list[ImageSpec]) -> None:
    import uvicorn
    app = build_app(cfg, tokens, specs)
    config = uvicorn.Config(app, host=cfg.host, port=cfg.port, loop="uvloop", http="httptools",
                            lifespan="on", access_log=False, log_level="warning",
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    try:
        server.run()
    except KilnError:
        raise
    if not server.started:
        raise KilnError(f"kiln serve could not start on {cfg.host}:{cfg.port}",
                        hint="is the address in use? choose another with --listen")
