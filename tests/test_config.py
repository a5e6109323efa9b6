"""The config file: good files load (smolmesh2's own included), bad ones give one line naming the
file and the place, both in process and through the real `smolmesh meshnode` command."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from conftest import smolmesh_command
from smolmesh import (
    Config,
    LegacyTcpConnect,
    LegacyTcpListen,
    SecureTcpConnect,
    SecureTcpListen,
    load_config,
    parse_config,
    tuning,
)
from smolmesh.control import socket_path
from smolmesh.errors import ConfigError

# A bad config is refused in about 0.1 s; this leaves room for a busy machine. A command that
# runs longer has started a node on a config it should have refused.
BAD_CONFIG_TIMEOUT_S = 10.0
STOP_GRACE_S = 10.0  # for such a node to remove its TUN device and status socket after SIGTERM

# The example of smolmesh2's README, byte for byte the shape its users have on disk.
SMOLMESH2_EXAMPLE = """\
{
  "node_name": "example_node",
  "ipv4_addresses": ["192.168.1.1"],
  "transports": [
    {
      "type": "legacy_tcp_connect",
      "host": "example.com",
      "port": 12345,
      "key": "encryption_key_here"
    },
    {
      "type": "legacy_tcp_listen",
      "port": 54321,
      "keys": ["allowed_key1", "allowed_key2"]
    }
  ],
  "linux_tuntap": true,
  "windows_tuntap": false
}
"""


def transports(*items: dict[str, Any]) -> str:
    return json.dumps({"node_name": "a", "transports": list(items)})


LISTEN = {"type": "legacy_tcp_listen", "port": 5000, "keys": ["k"]}
CONNECT = {"type": "legacy_tcp_connect", "host": "127.0.0.1", "port": 5000, "key": "k"}
SECURE_LISTEN = {**LISTEN, "type": "secure_tcp_listen", "port": 5001}
SECURE_CONNECT = {**CONNECT, "type": "secure_tcp_connect", "port": 5001}

# (id, file text or None for no file, the place and message the one line must hold)
BAD_CONFIGS: list[tuple[str, str | None, str]] = [
    ("missing file", None, "cannot read: No such file or directory"),
    ("empty file", "", "the file is empty"),
    ("invalid JSON", '{"node_name": "a",\n  "transports": [}', "line 2 column 18: invalid JSON"),
    ("trailing garbage", '{"node_name": "a"} x', "invalid JSON: trailing characters"),
    ("not an object", '["node_name"]', "$: expected object, got array"),
    ("missing node_name", '{"transports": []}', "$: missing required field node_name"),
    ("empty node_name", '{"node_name": ""}', "$.node_name: expected str of length >= 1"),
    ("node_name not str", '{"node_name": 7}', "$.node_name: expected str, got int"),
    ("linux_tuntap not bool", '{"node_name": "a", "linux_tuntap": "yes"}', "$.linux_tuntap"),
    (
        "port as string",
        transports({**LISTEN, "port": "5000"}),
        "$.transports[0].port: expected int, got str",
    ),
    ("port zero", transports({**LISTEN, "port": 0}), "$.transports[0].port: expected int >= 1"),
    (
        "port too big",
        transports(CONNECT, {**CONNECT, "port": 65536}),
        "$.transports[1].port: expected int <= 65535",
    ),
    ("port missing", transports({"type": "legacy_tcp_listen", "keys": ["k"]}), "field port"),
    ("host missing", transports({**CONNECT, "host": None}), "$.transports[0].host"),
    ("key missing", transports({"type": "legacy_tcp_connect", "host": "h", "port": 1}), "key"),
    ("secure key missing", transports({**SECURE_CONNECT, "key": None}), "$.transports[0].key"),
    ("secure keys empty", transports({**SECURE_LISTEN, "keys": []}), "$.transports[0].keys"),
    (
        "unknown transport type",
        transports({**LISTEN, "type": "quic_listen"}),
        "$.transports[0].type: unknown transport type 'quic_listen', expected one of"
        " legacy_tcp_connect, legacy_tcp_listen, secure_tcp_connect, secure_tcp_listen",
    ),
    ("transport without type", transports({"port": 1}), "$.transports[0]: missing required"),
    (
        "empty key list",
        transports({**LISTEN, "keys": []}),
        "$.transports[0].keys: expected array of length >= 1",
    ),
    ("empty key", transports({**CONNECT, "key": ""}), "$.transports[0].key"),
    ("transports not a list", '{"node_name": "a", "transports": {}}', "$.transports: expected"),
    (
        "bad IPv4 address",
        '{"node_name": "a", "ipv4_addresses": ["10.0.0.1", "10.0.0"]}',
        "$.ipv4_addresses[1]: not an IPv4 address: '10.0.0'",
    ),
    ("IPv4 octet too big", '{"node_name": "a", "ipv4_addresses": ["10.0.0.256"]}', "[0]"),
    ("IPv6 as IPv4", '{"node_name": "a", "ipv4_addresses": ["fd00::1"]}', "not an IPv4"),
    ("IPv4 as number", '{"node_name": "a", "ipv4_addresses": [167772161]}', "expected str"),
    ("mtu too small", '{"node_name": "a", "mtu": 576}', "$.mtu: expected int >= 1280"),
    ("mtu too big", '{"node_name": "a", "mtu": 65536}', "$.mtu: expected int <= 65535"),
    ("tun_name too long", '{"node_name": "a", "tun_name": "sixteen-letters!"}', "$.tun_name"),
    ("unknown log level", '{"node_name": "a", "log_level": "loud"}', "$.log_level"),
    (
        "negative ICMP error rate",
        '{"node_name": "a", "icmp_errors_per_s": -1}',
        "$.icmp_errors_per_s: expected float >= 0.0",
    ),
    (
        "ICMP error rate as string",
        '{"node_name": "a", "icmp_errors_per_s": "10"}',
        "$.icmp_errors_per_s: expected float, got str",
    ),
    (
        "negative ICMP error burst",
        '{"node_name": "a", "icmp_error_burst": -1}',
        "$.icmp_error_burst: expected int >= 0",
    ),
    (
        "fractional ICMP error burst",
        '{"node_name": "a", "icmp_error_burst": 2.5}',
        "$.icmp_error_burst: expected int, got float",
    ),
    (
        "negative keep_warm_s",
        '{"node_name": "a", "keep_warm_s": -1}',
        "$.keep_warm_s: expected float >= 0",
    ),
    ("not UTF-8", b'{"node_name": "\xff"}'.decode("latin-1"), "not valid UTF-8"),
]


def write_bad(tmp_path: Path, text: str | None) -> Path:
    path = tmp_path / "config.json"
    if text is not None:
        # latin-1 turns the "not UTF-8" case back into its raw bytes; other cases are ASCII.
        path.write_bytes(text.encode("latin-1"))
    return path


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_in_process(tmp_path: Path, text: str | None, expected: str) -> None:
    path = write_bad(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_through_the_command(tmp_path: Path, text: str | None, expected: str) -> None:
    path = write_bad(tmp_path, text)
    result = meshnode_on_bad_config(path, text)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"smolmesh: {path}: ")
    assert expected in lines[0]


def meshnode_on_bad_config(path: Path, text: str | None) -> subprocess.CompletedProcess[str]:
    """The real `smolmesh meshnode PATH`, which must refuse the file at once. A node that runs
    instead is stopped (SIGTERM, then SIGKILL) and fails the test; if it was killed, the status
    socket it left is removed."""
    proc = subprocess.Popen(
        [*smolmesh_command(), "meshnode", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=BAD_CONFIG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            stdout, stderr = proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        remove_stale_status_socket(text)
        pytest.fail(
            f"meshnode ran for {BAD_CONFIG_TIMEOUT_S} s on a config it should refuse:\n{stderr}"
        )
    finally:
        if proc.poll() is None:  # interrupted: no node outlives the test
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def remove_stale_status_socket(text: str | None) -> None:
    """Remove the status socket of the node `text` names if nobody listens on it any more."""
    try:
        name = json.loads(text or "")["node_name"]
    except (ValueError, TypeError, KeyError):
        return
    if not isinstance(name, str) or not name:
        return
    path = socket_path(name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # gone, or another node's


def test_smolmesh2_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(SMOLMESH2_EXAMPLE)
    config = load_config(path)
    assert config == Config(
        node_name="example_node",
        ipv4_addresses=["192.168.1.1"],
        transports=[
            LegacyTcpConnect(host="example.com", port=12345, key="encryption_key_here"),
            LegacyTcpListen(port=54321, keys=["allowed_key1", "allowed_key2"]),
        ],
        linux_tuntap=True,
        windows_tuntap=False,
    )


def test_defaults() -> None:
    config = parse_config(b'{"node_name": "a"}')
    assert config.linux_tuntap is False  # as in smolmesh2: no field, no TUN device
    assert config.windows_tuntap is False
    assert config.ipv4_addresses == []
    assert config.transports == []
    assert config.tun_name == "smolmesh1"
    assert config.mtu is None
    assert config.log_level is None
    assert config.icmp_errors_per_s == tuning.ICMP_ERRORS_PER_S == 10.0  # RFC 4443's example
    assert config.icmp_error_burst == tuning.ICMP_ERROR_BURST == 10
    assert config.keep_warm_s == tuning.KEEP_WARM_S == 1.0


def test_mtu_range() -> None:
    # From the least MTU that keeps IPv6 on the device to the most a TUN device takes; packets
    # above 65,526 bytes are answered with ICMP by the node (see smolmesh._core.icmp_too_big).
    for mtu in (1280, 65526, 65535):
        assert parse_config(f'{{"node_name": "a", "mtu": {mtu}}}').mtu == mtu


def test_icmp_error_limit_range() -> None:
    # 0 and 0: no ICMP errors at all; a whole number of errors a second is a float too.
    for rate, burst in ((0, 0), (0.5, 1), (1000, 100000)):
        config = parse_config(
            f'{{"node_name": "a", "icmp_errors_per_s": {rate}, "icmp_error_burst": {burst}}}'
        )
        assert (config.icmp_errors_per_s, config.icmp_error_burst) == (rate, burst)
        assert isinstance(config.icmp_errors_per_s, float)


def test_every_field() -> None:
    data = {
        "node_name": "ünïcode node",
        "linux_tuntap": False,
        "windows_tuntap": True,
        "ipv4_addresses": ["10.0.0.1", "255.255.255.255"],
        "transports": [LISTEN, CONNECT, SECURE_LISTEN, SECURE_CONNECT],
        "tun_name": "mesh0",
        "mtu": 1400,
        "log_level": "debug",
        "icmp_errors_per_s": 2.5,
        "icmp_error_burst": 3,
        "tun_coalesce": False,
        "keep_warm_s": 0.0,
    }
    config = Config.from_dict(data)
    assert config.to_dict() == data
    assert [type(t) for t in config.transports] == [
        LegacyTcpListen,
        LegacyTcpConnect,
        SecureTcpListen,
        SecureTcpConnect,
    ]
    assert parse_config(json.dumps(data)) == config
    assert parse_config(json.dumps(data).encode()) == config


def test_unknown_fields_are_ignored() -> None:
    data = {
        "node_name": "a",
        "admin_socket": "/run/smolmesh.sock",
        "transports": [{**LISTEN, "bind": "::"}, {**CONNECT, "weight": 3}],
    }
    config = Config.from_dict(data)
    assert config.transports == [
        LegacyTcpListen(port=5000, keys=["k"]),
        LegacyTcpConnect(host="127.0.0.1", port=5000, key="k"),
    ]


def test_byte_order_mark_is_skipped() -> None:
    assert parse_config(b'\xef\xbb\xbf{"node_name": "a"}').node_name == "a"


def test_from_dict_errors_name_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^scripted: \$\.transports\[0\]\.port: expected int"):
        Config.from_dict({"node_name": "a", "transports": [{**LISTEN, "port": 1.5}]}, "scripted")
    with pytest.raises(ConfigError, match=r"^config: \$: missing required field node_name"):
        parse_config({})


def test_config_is_frozen() -> None:
    config = parse_config(b'{"node_name": "a"}')
    with pytest.raises(AttributeError):
        config.node_name = "b"  # type: ignore[misc]
    changed = msgspec.structs.replace(config, node_name="b")
    assert (config.node_name, changed.node_name) == ("a", "b")
