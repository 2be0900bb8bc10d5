"""A run's network model: --network, --publish and --allow-net, parsed, checked and matched.

Every run (as root) has a network of its own: a network namespace whose only
interface is its loopback, shared by the run's processes and nobody else
(vkernel/netns.py). A guest reaches nothing outside its run, not even the
host's loopback, unless the user says so:

- ``--publish [HOST_IP:]HOST_PORT:GUEST_PORT`` exposes a port the guest
  listens on at HOST_IP:HOST_PORT of the host (HOST_IP defaults to 127.0.0.1);
- ``--allow-net DEST[:PORT]`` (DEST a host name, an IP address or a CIDR)
  lets guests connect out to exactly those destinations through the host's
  network. Any other connect fails as an unreachable network would
  (ENETUNREACH), with an audit record;
- ``--network host`` is the explicit opt-out: guest sockets are the host's.

This module is pure: it parses the options into records that cross from the
command line to the supervisor and the guest processes, and answers "may the
guest send to this address".
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from formats.errors import KilnError

ISOLATED, HOST, NONE = "isolated", "host", "none"
"""Network modes: the run's own loopback (default as root); the host's network (--network
host); no internet sockets at all (a run without the privileges for a namespace)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Publish:
    """One ``--publish``: the host's HOST_IP:HOST_PORT reaches the guest's GUEST_PORT (TCP)."""
    host_ip: str
    host_port: int
    guest_port: int
    text: str = ""                       # as the user wrote it, for messages


@dataclass(frozen=True)
class AllowRule:
    """One ``--allow-net``: these networks (a host name's addresses, an address, a CIDR), at
    one port or every port."""
    text: str
    networks: tuple[IPNetwork, ...]
    port: int | None = None

    def matches(self, ip: IPAddress, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        return any(ip.version == n.version and ip in n for n in self.networks)


@dataclass(frozen=True)
class NetPolicy:
    """The network of one run, as the user asked for it."""
    mode: str = ISOLATED
    allow: tuple[AllowRule, ...] = ()
    publish: tuple[Publish, ...] = ()

    def rule_for(self, ip: str, port: int) -> AllowRule | None:
        """The rule that lets a guest reach ``ip``:``port`` outside its run, else None."""
        addr = canonical_ip(ip)
        if addr is None:
            return None
        for rule in self.allow:
            if rule.matches(addr, port):
                return rule
        return None


def canonical_ip(ip: str) -> IPAddress | None:
    """``ip`` as an address object; an IPv4-mapped IPv6 address is its IPv4 address."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_local(ip: str) -> bool:
    """Whether a guest's ``ip`` names its own run: loopback, or the unspecified address (which
    Linux takes as the local host in connect)."""
    addr = canonical_ip(ip)
    return addr is not None and (addr.is_loopback or addr.is_unspecified)


def _port(text: str, value: str, what: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise KilnError(f"{what} {text!r}: {value!r} is not a port number (1-65535)",
                        hint=_HINTS[what])
    return int(value)


_HINTS = {
    "--publish": "write --publish 8080:80 or --publish 127.0.0.1:8080:80 (HOST_IP:HOST_PORT:"
                 "GUEST_PORT; an IPv6 HOST_IP in brackets: [::1]:8080:80)",
    "--allow-net": "write --allow-net example.com, --allow-net 10.0.0.0/8, --allow-net "
                   "203.0.113.7:443 or --allow-net [2001:db8::1]:443",
}


def parse_publish(text: str) -> Publish:
    """``[HOST_IP:]HOST_PORT:GUEST_PORT``; an IPv6 HOST_IP is written in brackets."""
    host_ip = "127.0.0.1"
    rest = text
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise KilnError(f"--publish {text!r}: an IPv6 address in brackets must be followed "
                            "by :HOST_PORT:GUEST_PORT", hint=_HINTS["--publish"])
        host_ip, rest = text[1:end], text[end + 2:]
        parts = rest.split(":")
        if len(parts) != 2:
            raise KilnError(f"--publish {text!r} is not [HOST_IP]:HOST_PORT:GUEST_PORT",
                            hint=_HINTS["--publish"])
    else:
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) != 2:
            raise KilnError(f"--publish {text!r} is not [HOST_IP:]HOST_PORT:GUEST_PORT",
                            hint=_HINTS["--publish"])
    if canonical_ip(host_ip) is None:
        raise KilnError(f"--publish {text!r}: {host_ip!r} is not an IP address",
                        hint=_HINTS["--publish"])
    return Publish(str(ipaddress.ip_address(host_ip)), _port(text, parts[0], "--publish"),
                   _port(text, parts[1], "--publish"), text)


def parse_allow(text: str, resolve=socket.getaddrinfo) -> AllowRule:  # type: ignore[no-untyped-def]
    """``DEST[:PORT]``: a host name (resolved now, through the host's resolver), an IP
    address or a CIDR; an IPv6 address or network with a port is written in brackets."""
    dest, port = text, None
    if text.startswith("["):
        end = text.find("]")
        tail = text[end + 1:] if end >= 0 else ""
        if end < 0 or (tail and not tail.startswith(":")):
            raise KilnError(f"--allow-net {text!r}: an IPv6 destination in brackets is "
                            "followed by nothing or :PORT", hint=_HINTS["--allow-net"])
        dest = text[1:end]
        if tail:
            port = _port(text, tail[1:], "--allow-net")
    elif text.count(":") == 1:
        dest, p = text.split(":")
        port = _port(text, p, "--allow-net")
    if not dest:
        raise KilnError(f"--allow-net {text!r} names no destination", hint=_HINTS["--allow-net"])
    try:
        net = ipaddress.ip_network(dest, strict=False)
    except ValueError:
        net = None
    if net is not None:
        return AllowRule(text, (net,), port)
    if "/" in dest or dest.count(":") > 1:
        raise KilnError(f"--allow-net {text!r}: {dest!r} is not an IP address or network",
                        hint=_HINTS["--allow-net"])
    try:
        infos = resolve(dest, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as e:
        raise KilnError(f"--allow-net {text!r}: cannot resolve the host name {dest!r} "
                        f"({getattr(e, 'strerror', None) or e})",
                        hint="check the name, or give its IP address") from None
    nets = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        n = ipaddress.ip_network(addr)
        if n not in nets:
            nets.append(n)
    return AllowRule(text, tuple(nets), port)


def parse(network: str | None, publish: tuple[str, ...], allow: tuple[str, ...]) -> NetPolicy:
    """The run's policy from ``kiln run``'s options (host names resolved here)."""
    mode = network or ISOLATED
    if mode not in (ISOLATED, HOST):
        raise KilnError(f"--network {network!r} is not a network mode",
                        hint="--network host gives the guest the host's network; without "
                             "--network each run has its own loopback only")
    if mode == HOST and (publish or allow):
        raise KilnError("--publish and --allow-net do not go with --network host (the guest "
                        "uses the host's network as it is)",
                        hint="leave out --network host to keep the run's network isolated")
    pubs = tuple(parse_publish(p) for p in publish)
    seen: dict[tuple[str, int], str] = {}
    for p in pubs:
        key = (p.host_ip, p.host_port)
        if key in seen:
            raise KilnError(f"--publish {p.text!r} and --publish {seen[key]!r} use the same "
                            f"host address {p.host_ip} port {p.host_port}",
                            hint="give each published port its own HOST_PORT")
        seen[key] = p.text
    return NetPolicy(mode, tuple(parse_allow(a) for a in allow), pubs)
