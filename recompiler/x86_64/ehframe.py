"""A small reader for .eh_frame: the address range of every FDE (function extents in stripped binaries)."""
from __future__ import annotations

import struct

__all__ = ["fde_starts", "fde_ranges"]


def _uleb(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    while i < len(b):
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if not x & 0x80:
            break
    return r, i


def _sleb(b: bytes, i: int) -> tuple[int, int]:
    r = s = 0
    x = 0
    while i < len(b):
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if not x & 0x80:
            break
    if x & 0x40:
        r -= 1 << s
    return r, i


def _enc(b: bytes, i: int, enc: int, field_addr: int) -> tuple[int, int]:
    fmt = enc & 0x0F
    if fmt == 0x00:
        v, n = struct.unpack_from("<Q", b, i)[0], 8
    elif fmt == 0x01:
        v, j = _uleb(b, i)
        n = j - i
    elif fmt == 0x02:
        v, n = struct.unpack_from("<H", b, i)[0], 2
    elif fmt == 0x03:
        v, n = struct.unpack_from("<I", b, i)[0], 4
    elif fmt == 0x04:
        v, n = struct.unpack_from("<Q", b, i)[0], 8
    elif fmt == 0x09:
        v, j = _sleb(b, i)
        n = j - i
    elif fmt == 0x0A:
        v, n = struct.unpack_from("<h", b, i)[0], 2
    elif fmt == 0x0B:
        v, n = struct.unpack_from("<i", b, i)[0], 4
    elif fmt == 0x0C:
        v, n = struct.unpack_from("<q", b, i)[0], 8
    else:
        raise ValueError(f"pointer encoding {enc:#x}")
    if enc & 0x70 == 0x10:
        v += field_addr
    return v & 0xFFFF_FFFF_FFFF_FFFF, i + n


def fde_starts(data: bytes, section_addr: int) -> list[int]:
    """pc_begin of every FDE in an .eh_frame section's bytes (stops quietly at malformed data)."""
    return [a for a, _ in fde_ranges(data, section_addr)]


def fde_ranges(data: bytes, section_addr: int) -> list[tuple[int, int]]:
    """[pc_begin, pc_begin + pc_range) of every FDE in an .eh_frame section's bytes (stops quietly
    at malformed data)."""
    out: list[tuple[int, int]] = []
    cie_enc: dict[int, int] = {}
    i = 0
    try:
        while i + 4 <= len(data):
            length = struct.unpack_from("<I", data, i)[0]
            if length == 0:
                break
            hdr = 4
            if length == 0xFFFF_FFFF:
                length = struct.unpack_from("<Q", data, i + 4)[0]
                hdr = 12
            start = i + hdr
            end = start + length
            if end > len(data):
                break
            cie_id = struct.unpack_from("<I", data, start)[0]
            if cie_id == 0:
                j = start + 4
                version = data[j]
                j += 1
                aug_end = data.index(b"\0", j)
                aug = data[j:aug_end].decode("latin-1")
                j = aug_end + 1
                _, j = _uleb(data, j)
                _, j = _sleb(data, j)
                if version == 1:
                    j += 1
                else:
                    _, j = _uleb(data, j)
                enc = 0
                if aug.startswith("z"):
                    _, j = _uleb(data, j)
                    for ch in aug[1:]:
                        if ch == "R":
                            enc = data[j]
                            j += 1
                        elif ch == "P":
                            penc = data[j]
                            _, j = _enc(data, j + 1, penc, section_addr + j + 1)
                        elif ch == "L":
                            j += 1
                        elif ch in "SB":
                            pass
                        else:
                            break
                cie_enc[i] = enc
            else:
                cie_off = start - cie_id
                enc = cie_enc.get(cie_off, 0)
                j = start + 4
                pc, j = _enc(data, j, enc, section_addr + j)
                size, _ = _enc(data, j, enc & 0x0F, section_addr + j)    # pc_range: same format, absolute
                out.append((pc, (pc + size) & 0xFFFF_FFFF_FFFF_FFFF))
            i = end
    except (ValueError, struct.error, IndexError):
        pass
    return out
