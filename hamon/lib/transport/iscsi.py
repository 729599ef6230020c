"""Userspace iSCSI transport: one LUN through an iSCSI session, libiscsi (Debian
``libiscsi7``, 1.19) through ctypes.

The library binding is :mod:`hamon.lib.transport.libiscsi`, URLs and ISIDs are
:mod:`hamon.lib.transport.iscsi_url`, the session (login, the commands in flight, the
time bounds, logout) is :mod:`hamon.lib.transport.iscsi_session`.

A transport is one path to one LUN (``iscsi://host[:port]/iqn/lun``), as an sd device
is for the kernel; its commands go through a session to that portal and target. Made on
its own, a transport has a private session, with the ISID of its path alone. An action
(the :class:`~hamon.lib.multipath.resolve.Resolver` of one fence or resource operation)
makes its transports through :class:`SharedSessions`: one session per portal and target
carries every LUN of that target the action names, as the kernel's initiator does, so a
fence on 256 LUNs x 2 paths logs in once per portal it uses, not 512 times.

Stable initiator port: a session logs in with the ISID
:func:`~hamon.lib.transport.iscsi_url.derive_isid` gives its initiator name, portal,
target and LUN set, the same in every process (an action's LUN set is its device list,
so the fence's ``on`` and ``off`` of one stonith device are one nexus). Rule for
callers: one live session per (initiator, portal, target, LUN set) at a time (a second
login with the same ISID may reinstate, i.e. close, the first).

Two tgt 1.0.85 facts (verified, see tests/integration): tgt does not reinstate here,
because libiscsi without CHAP starts the login in the operational stage and tgt only
looks for a live session with the same ISID in the security stage; and tgt binds a PR
registration to the session instance (TSIH + creation time), not to name + ISID, so on
tgt a new session is never the old registrant, whatever its ISID.
"""
from __future__ import annotations

import time

from hamon.lib.transport import libiscsi as li
from hamon.lib.transport.base import DEFAULT_TIMEOUT, CommandResult, PathError, Transport
from hamon.lib.transport.iscsi_session import IscsiSession
from hamon.lib.transport.iscsi_url import WHITE_SPACE, IscsiUrl, derive_isid, parse_iscsi_url


class IscsiTransport(Transport):
    """One path to one LUN: its commands go through ``session`` (shared with the other
    LUNs of an action, see :class:`SharedSessions`) or, without one, a private session
    opened on the first command.

    ``path`` is the URL, ``initiator`` this node's iSCSI name (required; deriving it from
    a node name is the caller's business). ``role``: a second nexus of this initiator on
    this path (see :func:`derive_isid`); "" = the node's own, registered one.
    """

    url: IscsiUrl
    session: IscsiSession

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT, initiator: str = "",
                 role: str = "", session: IscsiSession | None = None) -> None:
        super().__init__(path, timeout)
        self.initiator = initiator
        self.role = role
        self.url = parse_iscsi_url(self.path)
        if not self.initiator or WHITE_SPACE.search(self.initiator):
            raise ValueError(f"{self.path}: an iSCSI initiator name without spaces is "
                             f"required, got {self.initiator!r}")
        if session is None:
            session = IscsiSession(self.initiator, self.url.portal, self.url.target,
                                   derive_isid(self.initiator, self.url, self.role))
        self.session = session
        session.attach()

    def __repr__(self) -> str:
        return (f"IscsiTransport(path={self.path!r}, timeout={self.timeout!r}, "
                f"initiator={self.initiator!r}, role={self.role!r})")

    @property
    def isid(self) -> bytes:
        """The ISID of the session (the I_T nexus) this path's commands go through."""
        return self.session.isid

    # -- public ------------------------------------------------------------------

    def execute(self, cdb: bytes, data_out: bytes | None = None, data_in_len: int = 0,
                timeout: float | None = None) -> CommandResult:
        """Send one CDB through the session (logging in first if needed), within ``timeout``.

        The bound covers connect + login + command: whatever happens, this returns or
        raises within ``timeout`` seconds (plus scheduling noise).
        """
        if not 1 <= len(cdb) <= li.CDB_MAX:
            raise ValueError(f"CDB of {len(cdb)} bytes: libiscsi sends 1..{li.CDB_MAX}")
        if data_out is not None and data_in_len:
            raise ValueError("bidirectional commands are not supported")
        if self._closed:
            raise PathError(self.path, "transport is closed")
        bound = self.timeout if timeout is None else timeout
        return self.session.execute(self.path, self.url.lun, bytes(cdb), data_out,
                                    data_in_len, time.monotonic() + bound, bound)

    def close(self) -> None:
        """Leave the session; the last of its paths logs out (best effort, bounded:
        iscsi_session.LOGOUT_BOUND)."""
        if not self._closed:
            super().close()
            self.session.detach()

    @property
    def target_id(self) -> str:
        """The iSCSI target (its name, which RFC 7143 makes worldwide unique): what one
        LUN of it taught about the target's PR behaviour holds for its other LUNs."""
        return f"iscsi:{self.url.target.lower()}"

    @property
    def connected(self) -> bool:
        """Whether the session is open (for tests and diagnostics)."""
        return self.session.connected


class SharedSessions:
    """The sessions of one action: one per (portal, target), carrying every LUN of that
    target among ``urls`` (the action's device list), with the ISID of that LUN set.

    Made by the resolver for each resolve(); :meth:`transport` is its iSCSI opener.
    ``pool``: sessions kept across several of these (the resolver's), so that two
    resolve() calls that name the same LUN set use one session, never two logins with
    one ISID at once (which may reinstate, i.e. close, the first).
    """

    def __init__(self, initiator: str, urls: list[IscsiUrl], role: str = "",
                 pool: dict[tuple[str, str, bytes], IscsiSession] | None = None) -> None:
        self.initiator = initiator
        self.role = role
        self._luns: dict[tuple[str, str], set[int]] = {}
        for url in urls:
            self._luns.setdefault(self._key(url), set()).add(url.lun)
        self._pool = {} if pool is None else pool

    @staticmethod
    def _key(url: IscsiUrl) -> tuple[str, str]:
        return (url.portal.lower(), url.target.lower())

    def __len__(self) -> int:
        """How many sessions the action may open (one socket each)."""
        return len(self._luns)

    def session(self, url: IscsiUrl) -> IscsiSession:
        """The session of ``url``'s portal and target (a URL not among ``urls``: of its
        LUN alone, or of the set already there)."""
        key = self._key(url)
        isid = derive_isid(self.initiator, url, self.role,
                           self._luns.setdefault(key, {url.lun}))
        found = self._pool.get((*key, isid))
        if found is None:
            found = self._pool[(*key, isid)] = IscsiSession(
                self.initiator, url.portal, url.target, isid)
        return found

    def transport(self, path: str, timeout: float = DEFAULT_TIMEOUT) -> IscsiTransport:
        """A path (``iscsi://`` URL) whose commands go through the action's session."""
        url = parse_iscsi_url(path)
        return IscsiTransport(path=path, timeout=timeout, initiator=self.initiator,
                              role=self.role, session=self.session(url))
