"""x86-64 front end: ELF reading, Capstone decoding, code discovery / CFG, semantics -> IR."""
from __future__ import annotations
