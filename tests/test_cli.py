"""The `smolmesh` command: every subcommand run for real, and meshnode's error paths in process."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smolmesh import cli
from smolmesh.config import Config
from smolmesh.errors import StartupError

RunSmolmesh = Callable[..., subprocess.CompletedProcess[str]]  # the conftest fixture's type
IPV6_FORM = re.compile(r"fd00(:[0-9a-f]{4}){7}")
IPV4_FORM = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("smolmesh: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [[], ["help"], ["--help"], ["-h"], ["meshnode", "--help"]])
def test_help(run_smolmesh: RunSmolmesh, args: list[str]) -> None:
    result = run_smolmesh(*args)
    assert result.returncode == 0
    assert result.stderr == ""
    commands = (
        "meshnode",
        "name-to-ipv6",
        "make-random-ipv4",
        "make-random-ipv6",
        "genkey",
        "demo",
    )
    for command in commands:
        assert command in result.stdout


def test_name_to_ipv6_example(run_smolmesh: RunSmolmesh) -> None:
    result = run_smolmesh("name-to-ipv6", "example_node")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "fd00:eaeb:953e:cb7e:0b60:e648:3457:9676\n"


def test_name_to_ipv6_every_vector(run_smolmesh: RunSmolmesh, vectors: dict[str, Any]) -> None:
    for vector in vectors["name_to_ipv6"]:
        result = run_smolmesh("name-to-ipv6", vector["name"])
        assert result.returncode == 0
        assert result.stdout == vector["ipv6"] + "\n", vector["name"]


def test_python_dash_m(vectors: dict[str, Any]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smolmesh", "name-to-ipv6", "example_node"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "fd00:eaeb:953e:cb7e:0b60:e648:3457:9676\n")


def test_make_random_ipv6(run_smolmesh: RunSmolmesh) -> None:
    seen = set()
    for _ in range(3):
        result = run_smolmesh("make-random-ipv6")
        assert (result.returncode, result.stderr) == (0, "")
        address = result.stdout.removesuffix("\n")
        assert IPV6_FORM.fullmatch(address), address
        seen.add(address)
    assert len(seen) == 3


def test_make_random_ipv4(run_smolmesh: RunSmolmesh) -> None:
    seen = set()
    for _ in range(3):
        result = run_smolmesh("make-random-ipv4")
        assert (result.returncode, result.stderr) == (0, "")
        address = result.stdout.removesuffix("\n")
        assert IPV4_FORM.fullmatch(address), address
        assert all(0 <= int(octet) <= 255 for octet in address.split("."))
        seen.add(address)
    assert len(seen) > 1


def test_genkey_prints_a_fresh_32_byte_key(run_smolmesh: RunSmolmesh) -> None:
    keys = set()
    for _ in range(2):
        result = run_smolmesh("genkey")
        assert (result.returncode, result.stderr) == (0, "")
        key = result.stdout.removesuffix("\n")
        assert len(base64.urlsafe_b64decode(key + "=")) == 32, key
        keys.add(key)
    assert len(keys) == 2


def test_random_forms_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    # Many draws, cheaply: every byte value may appear, so the form must hold for all of them.
    for _ in range(200):
        assert cli.main(["make-random-ipv6"]) == 0
        assert cli.main(["make-random-ipv4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(IPV6_FORM.fullmatch(line) for line in lines[0::2])
    assert all(str(ipaddress.IPv4Address(line)) == line for line in lines[1::2])


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["--frobnicate"],
        ["name-to-ipv6"],
        ["name-to-ipv6", "a", "b"],
        ["make-random-ipv4", "extra"],
        ["make-random-ipv6", "extra"],
        ["genkey", "extra"],
        ["meshnode"],
        ["meshnode", "a.json", "b.json"],
        ["meshnode", "a.json", "--log-level"],
        ["meshnode", "a.json", "--log-level", "loud"],
        ["meshnode", "a.json", "--colour"],
        ["status", "--json", "--prometheus"],
        ["status", "a", "b"],
        ["status", "--yaml"],
    ],
)
def test_usage_errors(run_smolmesh: RunSmolmesh, args: list[str]) -> None:
    assert_usage_error(run_smolmesh(*args))


# --- meshnode's paths around the node, with a stand-in for smolmesh.node ---


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"node_name": "alice", "linux_tuntap": False}))
    return path


def fake_node(monkeypatch: pytest.MonkeyPatch, behaviour: Any) -> list[tuple[Config, str | None]]:
    calls: list[tuple[Config, str | None]] = []

    def run_meshnode(
        config: Config, log_level: str | None = None, config_path: str | None = None
    ) -> int:
        assert config_path is not None  # read again on SIGHUP
        calls.append((config, log_level))
        if isinstance(behaviour, BaseException):
            raise behaviour
        return int(behaviour)

    module = types.ModuleType("smolmesh.node")
    module.run_meshnode = run_meshnode  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smolmesh.node", module)
    return calls


@pytest.mark.parametrize(
    ("options", "level"),
    [
        ([], None),
        (["-v"], "DEBUG"),
        (["--log-level", "warning"], "WARNING"),
        (["--log-level=ERROR"], "ERROR"),
    ],
)
def test_meshnode_hands_the_config_to_the_node(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, options: list[str], level: str | None
) -> None:
    calls = fake_node(monkeypatch, 0)
    assert cli.main(["meshnode", *options, str(config_file)]) == 0
    assert len(calls) == 1
    config, log_level = calls[0]
    assert (config.node_name, config.linux_tuntap, log_level) == ("alice", False, level)


def test_meshnode_local_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_node(monkeypatch, StartupError("cannot open /dev/net/tun: are you root?"))
    assert cli.main(["meshnode", str(config_file)]) == 1
    captured = capsys.readouterr()
    assert captured.err == "smolmesh: cannot open /dev/net/tun: are you root?\n"
    assert captured.out == ""


def test_meshnode_os_error_is_one_line(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_node(monkeypatch, PermissionError(13, "Permission denied", "/dev/net/tun"))
    assert cli.main(["meshnode", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smolmesh: ") and err.count("\n") == 1 and "Permission denied" in err


def test_meshnode_ctrl_c_is_quiet(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_node(monkeypatch, KeyboardInterrupt())
    assert cli.main(["meshnode", str(config_file)]) == 130
    assert capsys.readouterr() == ("", "")


def test_meshnode_without_the_node_module(
    monkeypatch: pytest.MonkeyPatch, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "smolmesh.node", None)  # makes the import fail
    assert cli.main(["meshnode", str(config_file)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smolmesh: meshnode is not available") and err.count("\n") == 1


def test_meshnode_checks_the_config_before_the_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = fake_node(monkeypatch, 0)
    assert cli.main(["meshnode", str(tmp_path / "missing.json")]) == 2
    assert calls == []
    assert "missing.json: cannot read" in capsys.readouterr().err


def test_demo_delegates(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("smolmesh.demo")
    module.main = lambda: 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "smolmesh.demo", module)
    assert cli.main(["demo"]) == 7


def test_demo_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "smolmesh.demo", None)
    assert cli.main(["demo"]) == 1
    assert capsys.readouterr().err.startswith("smolmesh: demo is not available")


def test_package_imports_light_and_exports_all() -> None:
    # `smolmesh name-to-ipv6` and scripts that only need the codec must not load the node (asyncio,
    # uvloop, the links); `smolmesh.Node` loads it on first use.
    code = (
        "import sys, smolmesh\n"
        "assert 'smolmesh.node' not in sys.modules, 'node imported eagerly'\n"
        "missing = [n for n in smolmesh.__all__ if n != 'Node' and not hasattr(smolmesh, n)]\n"
        "assert not missing, missing\n"
        "assert smolmesh.Node.__name__ == 'Node'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
