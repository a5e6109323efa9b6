"""Every exception smolmesh raises, split into our side's mistakes and the peer's.

The Rust core raises these classes too (`BadMacError`, `HandshakeError`), so callers catch one set.
"""


class SmolmeshError(Exception):
    """Base of every smolmesh error."""


class LocalError(SmolmeshError):
    """Something on this machine is wrong: the config, the privileges, a busy port."""


class ConfigError(LocalError):
    """The config file is missing or invalid. str() is one line that names the file and place."""


class StartupError(LocalError):
    """The node cannot start: no root, no /dev/net/tun, a port in use."""


class PeerError(SmolmeshError):
    """A peer broke the protocol; its link is closed, the node goes on."""


class HandshakeError(PeerError):
    """The peer's hello matched none of our keys (or not our one key)."""


class BadMacError(PeerError):
    """A frame's MAC did not verify: the stream is forged or corrupt."""
