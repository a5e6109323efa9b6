"""The `smolmesh` command line: smolmesh2's commands, plus `demo`.

Bad input never ends in a traceback: a usage mistake prints one line and exits 2, a bad config
prints the one-line ConfigError and exits 2, a problem of this machine (LocalError) prints one line
and exits 1, and Ctrl-C exits 130 quietly. A traceback means a bug in smolmesh.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from smolmesh import format_ipv6, name_to_ipv6
from smolmesh.config import LOG_LEVELS, load_config
from smolmesh.errors import ConfigError, LocalError

HELP = """\
smolmesh - a mesh VPN node that speaks the smolmesh2 protocol

smolmesh help | --help | -h
    This help message.

smolmesh meshnode CONFIG [-v | --log-level LEVEL]
    Run a mesh node with the JSON config file CONFIG until Ctrl-C or SIGTERM.
    -v logs at DEBUG; LEVEL is one of DEBUG, INFO, WARNING, ERROR, CRITICAL
    (default: the config's log_level, else INFO). On SIGHUP it reads CONFIG
    again and applies its transports; other links stay up.

smolmesh status [NODE_NAME] [--json | --prometheus]
    Show the links and routes of the nodes running on this machine (or of the
    one named NODE_NAME), read from their sockets in /run/smolmesh (root).
    --json prints them as JSON; --prometheus as metrics in Prometheus's text
    format (for node_exporter's textfile collector, say).

smolmesh reload [NODE_NAME]
    Ask the nodes running on this machine (or the one named NODE_NAME) to read
    their config files again (SIGHUP); each logs what it applied.

smolmesh name-to-ipv6 NAME
    Print the IPv6 address of the node named NAME.

smolmesh make-random-ipv4
    Print a random IPv4 address.

smolmesh make-random-ipv6
    Print a random IPv6 address in fd00::/8.

smolmesh genkey
    Print a random key (32 bytes, base64url) for a transport's `key`/`keys`.

smolmesh demo [--keep] [--nodes N]
    Start a small mesh of nodes in network namespaces on this machine and show
    traffic crossing it (needs root). --keep leaves it running until Ctrl-C;
    --nodes N makes the line of nodes N long (2-8, default 3).
"""

USAGE = (
    "smolmesh help | meshnode CONFIG [-v | --log-level LEVEL]"
    " | status [NODE_NAME] [--json | --prometheus] | reload [NODE_NAME]"
    " | name-to-ipv6 NAME"
    " | make-random-ipv4 | make-random-ipv6 | genkey | demo [--keep] [--nodes N]"
)
MESHNODE_USAGE = "smolmesh meshnode CONFIG [-v | --log-level LEVEL]"

EXIT_OK = 0
EXIT_FAILURE = 1  # this machine is not fit to run the command (LocalError)
EXIT_USAGE = 2  # the command line or the config is wrong
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class UsageError(Exception):
    """A mistake on the command line; str() is one line."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(args)
    except UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except ConfigError as error:
        _error(str(error))
        return EXIT_USAGE
    except LocalError as error:
        _error(str(error))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout went away (`smolmesh make-random-ipv6 | head -c0`): not worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("help", "--help", "-h"):
        sys.stdout.write(HELP)
        return EXIT_OK
    command, rest = args[0], args[1:]
    if "-h" in rest or "--help" in rest:
        sys.stdout.write(HELP)
        return EXIT_OK
    handler = COMMANDS.get(command)
    if handler is None:
        raise UsageError(f"unknown command {command!r}; usage: {USAGE}")
    return handler(rest)


def run_meshnode_command(args: list[str]) -> int:
    config_path, log_level = _parse_meshnode_args(args)
    config = load_config(config_path)
    try:
        from smolmesh.node import run_meshnode
    except ImportError as error:
        _error(f"meshnode is not available: {error}")
        return EXIT_FAILURE
    try:
        status = run_meshnode(config, log_level, config_path)
    except OSError as error:
        # A socket or device the node could not open: this machine's problem, say it in one line.
        _error(str(error))
        return EXIT_FAILURE
    return EXIT_OK if status is None else int(status)


def _parse_meshnode_args(args: list[str]) -> tuple[str, str | None]:
    positional: list[str] = []
    log_level: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            positional.extend(args[index:])
            break
        if arg in ("-v", "--verbose"):
            log_level = "DEBUG"
        elif arg == "--log-level" or arg.startswith("--log-level="):
            if "=" in arg:
                value = arg.partition("=")[2]
            elif index < len(args):
                value, index = args[index], index + 1
            else:
                raise UsageError(f"--log-level needs a LEVEL; usage: {MESHNODE_USAGE}")
            if value.upper() not in LOG_LEVELS:
                raise UsageError(
                    f"unknown log level {value!r}, expected one of {', '.join(LOG_LEVELS)}"
                )
            log_level = value.upper()
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg!r}; usage: {MESHNODE_USAGE}")
        else:
            positional.append(arg)
    if len(positional) != 1:
        raise UsageError(f"meshnode takes one CONFIG file; usage: {MESHNODE_USAGE}")
    return positional[0], log_level


def status_command(args: list[str]) -> int:
    from smolmesh import control

    formats = [arg for arg in args if arg in ("--json", "--prometheus")]
    names = [arg for arg in args if arg not in formats]
    if len(names) > 1 or len(formats) > 1 or any(name.startswith("-") for name in names):
        raise UsageError("usage: smolmesh status [NODE_NAME] [--json | --prometheus]")
    statuses = _statuses(names)
    if formats == ["--json"]:
        print(json.dumps(statuses[0] if names else statuses, indent=2))
    elif formats == ["--prometheus"]:
        print(control.format_prometheus(statuses), end="")
    else:
        print("\n\n".join(control.format_status(status) for status in statuses))
    return EXIT_OK


def _statuses(names: list[str]) -> list[dict[str, Any]]:
    """The status of the node named (`names`: none or one), or of every node running here;
    LocalError in one line when there is none."""
    from smolmesh import control

    if names:
        return [control.read_status(control.socket_path(names[0]))]
    statuses = control.read_statuses(control.running_nodes())
    if not statuses:
        raise LocalError(f"no node is running here (no status socket in {control.SOCKET_DIR})")
    return statuses


def reload_command(args: list[str]) -> int:
    """SIGHUP to each running node (or the one named), found by its status socket, once each
    node's config file checks: a broken file is this command's error (status 2, one line), where
    the node could only log it."""
    if len(args) > 1 or any(arg.startswith("-") for arg in args):
        raise UsageError("usage: smolmesh reload [NODE_NAME]")
    statuses = _statuses(args)
    for status in statuses:
        if status.get("config_path"):
            load_config(status["config_path"])
    for status in statuses:
        try:
            os.kill(status["pid"], signal.SIGHUP)
        except OSError as error:
            raise LocalError(f"{status['node_name']}: {error.strerror or error}") from None
        print(f"{status['node_name']}: asked to read its config again (its log says what changed)")
    return EXIT_OK


def name_to_ipv6_command(args: list[str]) -> int:
    if len(args) != 1:
        raise UsageError("usage: smolmesh name-to-ipv6 NAME")
    # The name's bytes as the shell gave them, so a name that is not valid UTF-8 still works.
    print(format_ipv6(name_to_ipv6(os.fsencode(args[0]))))
    return EXIT_OK


def make_random_ipv4_command(args: list[str]) -> int:
    _no_arguments("make-random-ipv4", args)
    print(".".join(str(byte) for byte in secrets.token_bytes(4)))
    return EXIT_OK


def make_random_ipv6_command(args: list[str]) -> int:
    _no_arguments("make-random-ipv6", args)
    print(format_ipv6(b"\xfd\x00" + secrets.token_bytes(14)))
    return EXIT_OK


def genkey_command(args: list[str]) -> int:
    _no_arguments("genkey", args)
    print(secrets.token_urlsafe(32))
    return EXIT_OK


def demo_command(args: list[str]) -> int:
    # The demo reads its own options from sys.argv[2:] if it has any; it gets none from here.
    try:
        demo = importlib.import_module("smolmesh.demo")
    except ImportError as error:
        _error(f"demo is not available: {error}")
        return EXIT_FAILURE
    status = demo.main()
    return EXIT_OK if status is None else int(status)


def _no_arguments(command: str, args: list[str]) -> None:
    if args:
        raise UsageError(f"{command} takes no arguments; usage: smolmesh {command}")


def _error(message: str) -> None:
    print(f"smolmesh: {message}", file=sys.stderr)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "meshnode": run_meshnode_command,
    "status": status_command,
    "reload": reload_command,
    "name-to-ipv6": name_to_ipv6_command,
    "make-random-ipv4": make_random_ipv4_command,
    "make-random-ipv6": make_random_ipv6_command,
    "genkey": genkey_command,
    "demo": demo_command,
}
