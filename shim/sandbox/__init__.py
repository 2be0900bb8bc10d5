"""Agent sandboxes: ``kiln serve``, its zygotes and sandboxes, the Python SDK and ``kiln sandbox``.

See docs/sandboxes.md for the API and shim/sandbox/server.py for how the
pieces fit: the HTTP server (api.py) keeps the sandboxes (manager.py); a
zygote per image (zygote.py) holds the guest code loaded and forks each
sandbox's first process (agent.py), which forks one guest process per exec
(guest.py).
"""
