"""iSCSI paths as hamon names them: ``iscsi://host[:port]/target-iqn/lun`` URLs, and the
stable ISID each (initiator, path) logs in with.

Why a stable ISID: SPC-4 identifies a registrant by its I_T nexus; for iSCSI the
initiator port is the initiator name plus the ISID. libiscsi gives every context a
pseudo-random ISID, so a registration made by one process would be invisible to the
next (ClusterLabs/fence-agents#517 and #576 for fence_scsi). :func:`derive_isid` gives
the same ISID for the same initiator name, portal, target and LUNs in every process.
The LUNs a session carries are part of it so that two resources' sessions to different
LUNs of one target through one portal are two sessions: RFC 7143 lets a login with the
ISID of a live session reinstate it (close the older one), as LIO does. Pure Python:
no libiscsi needed to parse or derive (the resolver and the CLI use this without loading
the library).
A URL is a ``NamedTuple`` (as urllib.parse's SplitResult), not a dataclass
(docs/architecture.md, "What a fence loads").
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

from hamon.lib.transport.digest import sha256 as _sha256

ISCSI_PORT = 3260

_URL_RE = re.compile(r"^iscsi://(?P<authority>[^/]*)/(?P<target>[^/]*)/(?P<lun>[^/]*)$",
                     re.IGNORECASE)
_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
#: Only the type prefix is checked (RFC 7143 names start with iqn., eui. or naa.): targets
#: accept looser names than the RFC's, and the prefix alone catches a forgotten target.
_NAME_RE = re.compile(r"^(iqn|eui|naa)\.\S+$", re.IGNORECASE)
#: White space anywhere (what str.isspace() calls white space): one regex search, not a
#: Python loop per character (parsing 512 URLs was 10 % of a 256-LUN off's CPU).
WHITE_SPACE = re.compile(r"\s")
#: SAM-5 flat space addressing reaches LUN 16383; libiscsi sends a 2-byte LUN field.
MAX_LUN = 16383
_EXAMPLE = "iscsi://192.0.2.10:3260/iqn.2003-01.org.example:disk1/1"


class IscsiUrl(NamedTuple):
    """One path to one LUN: ``iscsi://host[:port]/target-iqn/lun``.

    ``host`` is kept without brackets (``::1``, not ``[::1]``); :attr:`portal` adds them
    back where libiscsi wants them.
    """

    host: str
    port: int
    target: str
    lun: int

    @property
    def portal(self) -> str:
        """``host:port`` as libiscsi's connect expects it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"iscsi://{self.portal}/{self.target}/{self.lun}"


#: URLs parsed already (an action parses each of its URLs in several places: resolve,
#: sessions, transport); bounded, since a parse is cheap to repeat.
_PARSED: dict[str, IscsiUrl] = {}
_PARSED_MAX = 4096


def parse_iscsi_url(url: str) -> IscsiUrl:
    """Parse ``iscsi://host[:port]/target-iqn/lun``; ValueError says what is wrong.

    Credentials (``user%pass@``) are refused rather than ignored: CHAP is not supported
    here, and a silently dropped password would make a login fail with a vaguer error.
    """
    if isinstance(url, str):
        known = _PARSED.get(url)
        if known is not None:
            return known
    parsed = _parse(url)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[url] = parsed
    return parsed


def _parse(url: str) -> IscsiUrl:
    def bad(why: str) -> ValueError:
        return ValueError(f"malformed iSCSI URL {url!r}: {why} (expected e.g. {_EXAMPLE})")

    if not isinstance(url, str):
        raise ValueError(f"malformed iSCSI URL {url!r}: not a string")
    if not url.lower().startswith("iscsi://"):
        raise bad("it must start with iscsi://")
    if WHITE_SPACE.search(url):
        raise bad("it contains white space")
    if "?" in url or "#" in url:
        raise bad("query strings and fragments are not allowed")
    m = _URL_RE.match(url)
    if m is None:
        raise bad("it must have exactly three parts after iscsi://: host[:port], "
                  "target name and LUN, separated by '/'")
    authority, target, lun_text = m["authority"], m["target"], m["lun"]
    if "@" in authority:
        raise bad("credentials in the URL are not supported (no CHAP)")
    host, port = _split_authority(authority, bad)
    if not target:
        raise bad("the target name is missing")
    if not _NAME_RE.match(target):
        raise bad(f"target name {target!r} is not an iSCSI name (it must start with "
                  "iqn., eui. or naa.)")
    if not lun_text.isdigit() or not lun_text.isascii():
        raise bad(f"LUN {lun_text!r} is not a decimal number")
    lun = int(lun_text)
    if lun > MAX_LUN:
        raise bad(f"LUN {lun} is out of range 0..{MAX_LUN}")
    return IscsiUrl(host=host, port=port, target=target, lun=lun)


def _split_authority(authority: str, bad: Callable[[str], ValueError]) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    port_text = ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise bad("an IPv6 address must be closed with ']'")
        host, rest = authority[1:end], authority[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise bad(f"unexpected {rest!r} after the IPv6 address")
            port_text = rest[1:]
            if not port_text:
                raise bad("the port after ':' is empty")
        import ipaddress  # 2 ms at import: only for a bracketed IPv6 host

        try:
            host = ipaddress.IPv6Address(host).compressed
        except ValueError:
            raise bad(f"{host!r} is not an IPv6 address") from None
    else:
        if authority.count(":") > 1:
            raise bad("an IPv6 address must be written in brackets, e.g. [::1]:3260")
        host, sep, port_text = authority.partition(":")
        if sep and not port_text:
            raise bad("the port after ':' is empty")
        if not host:
            raise bad("the host is missing")
        if not _HOST_RE.match(host):
            raise bad(f"{host!r} is not a host name or IPv4 address")
        host = host.lower()
    if not port_text:
        return host, ISCSI_PORT
    if not port_text.isdigit() or not port_text.isascii():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise bad(f"port {port} is out of range 1..65535")
    return host, port


def derive_isid(initiator: str, url: IscsiUrl, role: str = "",
                luns: Iterable[int] | None = None) -> bytes:
    """The 6-byte ISID this initiator uses on this path, the same in every process.

    ``luns``: the LUNs of ``url``'s target that the session carries (an action's shared
    session, :class:`hamon.lib.transport.iscsi.SharedSessions`); None means ``url``'s
    LUN alone, and the set of one LUN gives exactly that ISID, so a one-LUN resource keeps
    its nexus whether or not its session is shared. Distinct LUN sets are distinct
    nexuses: two resources of one node on two LUNs of one target never share an ISID
    (a second login with the same ISID may reinstate, i.e. close, the first).

    ``role`` names a second, independent I_T nexus of the same initiator on the same path
    (e.g. a watchdog that only reads keys while the agent may be running): a login with
    the agent's ISID would reinstate, i.e. close, the agent's live session on targets
    that implement reinstatement. The empty role is the node's own nexus, unchanged.

    Format "random" (RFC 7143 11.12.5: T=10b in the top bits of byte 0, then 24 bits,
    then a 16-bit qualifier); all 40 bits come from SHA-256 over the lower-cased initiator
    name (iSCSI names compare case-insensitively) and the normalized path. 40 bits make
    a collision between two paths of one node to one target negligible, and a collision
    would only cost a session reinstatement, never a wrong registration.
    """
    lun_text = str(url.lun) if luns is None else ",".join(map(str, sorted(set(luns))))
    parts = ["hamon-isid-v1", initiator.lower(), url.host.lower(), str(url.port),
             url.target.lower(), lun_text]
    if role:
        parts.append(role)
    text = "\0".join(parts)
    digest = _sha256(text.encode()).digest()
    return bytes([0x80]) + digest[:5]
