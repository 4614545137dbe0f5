"""Start-up (issue 15): a light command imports only what it needs.

Each command runs in a fresh interpreter, which reports the modules it ended with. The test
asserts the import graph, not a time: `sfu --version`, `sfu --help`, `sfu agent status` and
`sfu agent mark-good` must not import tuf, httpx, rich, securesystemslib or cryptography (or
the command modules and packages they do not use); `sfu verify` not the signing tools nor the
IPC messages;
`sfu client check` (the fixed part of every update) no HTTP library but the standard one, no
signing SDK, no keys and no authoring tools; while a heavy command still gets what it needs.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest

import sfupdate.formats.sfui
from sfupdate import __version__, errors, keys
from sfupdate.authoring.repo import RepoServer, Repository
from sfupdate.cli.main import COMMANDS, LazyGroup, load
from sfupdate.formats.sfui import TrustedKey
from tests.agent.support import RunningAgent
from tests.conftest import SignImage

#: Third-party packages only some commands need (cryptography: its OpenSSL backend alone is
#: a large part of a light command's start-up).
HEAVY = ("tuf", "httpx", "rich", "securesystemslib", "cryptography", "urllib3")
#: All of ours a client of the agent needs: the IPC contract, the CBOR codec it uses, and the
#: `sfu agent` commands (the rest of sfui, keys, remote, client and the secure world: not).
IPC_CLIENT = {"sfupdate", "sfupdate.errors", "sfupdate.progress", "sfupdate.formats",
              "sfupdate.formats.schema", "sfupdate.formats.sfui",
              "sfupdate.formats.sfui.cbor", "sfupdate.cli", "sfupdate.cli.main",
              "sfupdate.cli.agent_cmds", "sfupdate.cli.render"}

CHILD = """
import json, sys
from sfupdate.cli.main import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


class Run:
    def __init__(self, tmp_path: Path, *args: str | Path) -> None:
        report = tmp_path / "modules.json"
        result = subprocess.run([sys.executable, "-c", CHILD, str(report), *map(str, args)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and report.exists(), result.stderr
        data = json.loads(report.read_text())
        self.code: int = data["code"]
        self.modules: set[str] = set(data["modules"])
        self.out, self.err = result.stdout, result.stderr

    def heavy(self) -> list[str]:
        return sorted(m for m in self.modules if m.split(".")[0] in HEAVY)

    def packages(self) -> set[str]:
        return {m.split(".")[0] for m in self.modules}

    def ours(self, *prefixes: str) -> list[str]:
        return sorted(m for m in self.modules
                      if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_version_and_help_import_no_command_module(tmp_path: Path, args: list[str]) -> None:
    run = Run(tmp_path, *args)
    assert run.code == 0
    assert run.heavy() == []
    assert run.ours("sfupdate") == ["sfupdate", "sfupdate.cli", "sfupdate.cli.main",
                                    "sfupdate.errors"]
    if args == ["--version"]:
        assert run.out == f"sfu, version {__version__}\n"
    else:
        listed = run.out.split("Commands:\n", 1)[1].splitlines()
        assert [line.split()[0] for line in listed] == sorted(COMMANDS)


def _assert_only_ipc(run: Run) -> None:
    assert run.heavy() == []
    assert "sfupdate.formats.ipc.client" in run.modules
    assert [m for m in run.ours("sfupdate") if m not in IPC_CLIENT
            and not m.startswith("sfupdate.formats.ipc.") and m != "sfupdate.formats.ipc"] == []


def test_agent_status_imports_only_the_ipc(tmp_path: Path, agent: RunningAgent) -> None:
    run = Run(tmp_path, "agent", "status", "--socket", agent.socket, "--json")
    assert run.code == 0
    assert json.loads(run.out)["running_sequence"] == 1
    _assert_only_ipc(run)
    help_run = Run(tmp_path, "agent", "status", "--help")
    assert help_run.code == 0 and "--socket" in help_run.out
    _assert_only_ipc(help_run)


def test_mark_good_through_the_agent_imports_only_the_ipc(tmp_path: Path,
                                                          agent: RunningAgent) -> None:
    """The mark-good unit runs `sfu agent mark-good` at every boot of a device: a client of
    the agent, without the secure world, cryptography or the TPM's library to load."""
    run = Run(tmp_path, "agent", "mark-good", "--socket", agent.socket)
    assert run.code == 0 and "slot A runs its confirmed image" in run.out
    _assert_only_ipc(run)
    assert "tpm2_pytss" not in run.packages()


def test_agent_status_refusal_keeps_the_one_line_contract(tmp_path: Path) -> None:
    run = Run(tmp_path, "agent", "status", "--socket", tmp_path / "no-agent.sock")
    assert run.code == errors.IpcError.exit_code
    assert run.out == ""
    assert len(run.err.splitlines()) == 1 and run.err.startswith("sfu: error: ")
    _assert_only_ipc(run)


def test_verify_imports_neither_the_signing_tools_nor_the_ipc(tmp_path: Path,
                                                              sign_image: SignImage,
                                                              es256_trusted: TrustedKey) -> None:
    public = tmp_path / "author.pub"
    public.write_bytes(keys.public_pem(es256_trusted.public_key))
    run = Run(tmp_path, "verify", sign_image(), "--key", public)
    assert run.code == 0 and "OK: authentic and complete" in run.out, run.err
    assert "cryptography" in run.packages()  # it does check the signature
    assert run.ours("sfupdate.authoring", "sfupdate.formats.ipc.messages", "sfupdate.richos",
                    "sfupdate.secure", "sfupdate.keys.hsm") == []
    assert run.packages().isdisjoint({"tuf", "securesystemslib", "httpx", "rich"})


def test_mark_good_imports_neither_the_signing_tools_nor_provisioning(tmp_path: Path) -> None:
    """`sfu board linux mark-good` runs at every boot of a device (a slow board pays each
    module): the `board` group it lives in must not drag in what only provisioning needs."""
    run = Run(tmp_path, "board", "linux", "mark-good", "--help")
    assert run.code == 0 and "--no-confirm" in run.out
    assert "sfupdate.cli.device_cmds" in run.modules
    assert run.ours("sfupdate.authoring", "sfupdate.keys", "sfupdate.secure.boot.provision",
                    "sfupdate.secure.boot.rom") == []


#: What a client never needs: an HTTP library beyond the standard one (tuf's urllib3 aside),
#: rich, and the cloud KMS and HSM SDKs securesystemslib would load for its signers.
CLIENT_NEVER = {"httpx", "httpcore", "h11", "rich", "boto3", "botocore", "s3transfer",
                "pkcs11", "azure", "hvac"}


@pytest.fixture
def http_repo(tmp_path: Path, es256_signer: keys.FileSigner,
              es256_trusted: TrustedKey) -> Iterator[tuple[str, Path]]:
    """An empty published repository served by `sfu serve`'s server: (URL, trusted root)."""
    key = tmp_path / "repo.key"
    keys.write_private_key(keys.generate_private_key("ES256"), key)
    Repository.init(tmp_path / "repo", key, [es256_trusted])
    server = RepoServer(tmp_path / "repo", "127.0.0.1", 0, log=lambda _line: None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.url, tmp_path / "repo" / "metadata" / "1.root.json"
    finally:
        server.shutdown()
        server.server_close()


def test_client_check_imports_no_http_library_no_signing_sdk_no_keys(
        tmp_path: Path, agent: RunningAgent, http_repo: tuple[str, Path]) -> None:
    """The fixed part of every update: TUF over HTTP and the agent's status, nothing more."""
    url, root = http_repo
    run = Run(tmp_path, "client", "check", "--repo", url, "--socket", agent.socket,
              "--trusted-root", root, "--state-dir", tmp_path / "state", "--json")
    assert run.code == 0, run.err
    assert json.loads(run.out)["update_available"] is False
    assert {"tuf", "securesystemslib", "cryptography"} <= run.packages()
    assert run.packages().isdisjoint(CLIENT_NEVER), sorted(run.packages() & CLIENT_NEVER)
    assert run.ours("sfupdate.keys", "sfupdate.authoring", "sfupdate.secure",
                    "sfupdate.formats.remote", "sfupdate.cli.operator_cmds") == []


HIDDEN_THEN_BACK = """
import importlib, sys
import sfupdate.richos.client
print("securesystemslib.signer" in sys.modules, "pkcs11" in sys.modules)
importlib.import_module("pkcs11")
print("pkcs11" in sys.modules)
"""


def test_signing_sdks_hidden_from_tuf_stay_importable() -> None:
    """The client imports tuf (and securesystemslib's signers) with their optional SDKs
    hidden; they are importable again right after (sfupdate.keys.hsm imports python-pkcs11
    for `pkcs11:` keys)."""
    result = subprocess.run([sys.executable, "-c", HIDDEN_THEN_BACK], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False", "True"]


def test_a_heavy_command_still_imports_what_it_needs(tmp_path: Path) -> None:
    """`sfu repo init` signs TUF metadata: the lazy imports still happen (and the checks above
    would see them)."""
    key, public = tmp_path / "repo.key", tmp_path / "firmware.pub"
    assert Run(tmp_path, "keys", "generate", "-o", key).code == 0
    assert Run(tmp_path, "keys", "public", key, "-o", public).code == 0
    run = Run(tmp_path, "repo", "init", tmp_path / "repo", "--key", key,
              "--firmware-key", public)
    assert run.code == 0, run.err
    assert (tmp_path / "repo" / "metadata" / "1.root.json").is_file()
    assert {"tuf", "securesystemslib", "cryptography"} <= {m.split(".")[0] for m in run.heavy()}


def _listing(group: click.Group, width: int) -> str:
    ctx = click.Context(group, info_name="sfu")
    formatter = click.HelpFormatter(width=width)
    group.format_commands(ctx, formatter)
    return formatter.getvalue()


def test_the_lazy_table_matches_the_commands() -> None:
    """Names, help lines and the rendered `sfu --help` listing from the table alone equal those
    of the commands it names, every command module's top-level command is in the table, and
    only the table adds a subcommand from another module (issue 18: no command module extends
    another's group, so no order of imports matters)."""
    lazy = LazyGroup("sfu", lazy=COMMANDS)
    listings = {width: _listing(lazy, width) for width in (50, 80, 120, 400)}
    assert lazy.commands == {}  # the listing came from the table
    eager = click.Group("sfu")
    for name, entry in COMMANDS.items():
        eager.add_command(load(entry.command), name)
    fix = "update COMMANDS in src/sfupdate/cli/main.py"
    for name, command in eager.commands.items():
        assert command.name == name, fix
        first_paragraph = (command.help or "").split("\n\n")[0]
        assert COMMANDS[name].help == " ".join(first_paragraph.split()), f"{name}: {fix}"
        assert not command.hidden and command.short_help is None, name
    for width, text in listings.items():
        assert text == _listing(eager, width)
    ctx = click.Context(lazy, info_name="sfu")
    for name in COMMANDS:
        assert lazy.get_command(ctx, name) is eager.commands[name]
    assert lazy.get_command(ctx, "no-such-command") is None


def test_only_the_table_adds_a_subcommand_from_another_module() -> None:
    """No command module extends another's group (issue 18: no order of imports matters):
    a group's subcommands are its own module's, or the table names them. And every command a
    module defines is reachable: in the table, or a subcommand."""
    added = {(e.command, r) for e in COMMANDS.values() for r in e.subcommands}
    table = {load(r) for e in COMMANDS.values() for r in (e.command, *e.subcommands)}
    reachable = set(table)
    for module in _command_modules():
        for attribute, group in vars(module).items():
            if not isinstance(group, click.Group):
                continue
            for sub in group.commands.values():
                reachable.add(sub)
                origin = sub.callback.__module__ if sub.callback else ""
                if origin != module.__name__:
                    where = [r for r in (e.command for e in COMMANDS.values())
                             if load(r) is group]
                    assert where and any(w == a and load(r) is sub for a, r in added
                                         for w in where), (
                        f"{origin} adds {sub.name} to {module.__name__}.{attribute}")
    for module in _command_modules():
        for value in vars(module).values():
            if isinstance(value, click.Command):
                assert value in reachable, f"{module.__name__}.{value.name}: not in COMMANDS"


def _command_modules() -> list[ModuleType]:
    import sfupdate.cli

    return [importlib.import_module(f"sfupdate.cli.{info.name}")
            for info in pkgutil.iter_modules(sfupdate.cli.__path__)
            if info.name.endswith("_cmds")]


def test_the_sfui_names_resolve_lazily() -> None:
    for name in sfupdate.formats.sfui.__all__:
        assert getattr(sfupdate.formats.sfui, name) is not None
    assert set(sfupdate.formats.sfui.__all__) <= set(dir(sfupdate.formats.sfui))
    with pytest.raises(AttributeError):
        sfupdate.formats.sfui.no_such_name  # noqa: B018
