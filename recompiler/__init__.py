"""The recompiler: container image in, image with a WebAssembly megabinary out.

Stages: ``image`` (safe intake of OCI / docker images), ``inventory`` (every
ELF, hashed and classified), ``x86_64`` (decode and lift to IR), ``wasm``
(IR to WebAssembly), ``link`` (megabinary and output image). It imports
``formats`` and never ``vkernel``.
"""
from __future__ import annotations
