"""The QEMU board from the host's side: a device (its disk and its TPM's state) and one
power-on of it (QEMU + swtpm), driven through the serial console (docs/board.md,
"The QEMU board").

QEMU runs with TCG (no KVM), no network device, the board's disk and a second, read-only disk
(the update stick); swtpm is the guest's TPM (tpm-tis, /dev/tpmrm0 in the guest). A power cut
is `kill -9` of QEMU: swtpm loses its client and terminates, as a TPM loses power; its NV
state is what it persisted. Every failure names what was awaited and ends with the tail of
the serial log (the whole log is kept next to the disk).
"""

from __future__ import annotations

import ctypes
import json
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

# whole lines only: the console arrives in chunks, and "version=1" is a prefix of "version=12"
READY: Final = re.compile(r"SFU-VM: ready slot=([AB]) version=(\d+)\n")
BOOTED: Final = re.compile(r"SFU-VM: booted slot ([AB]) version (\d+)\n")
# the last line of `sfu agent mark-good` (the agent's records after it), as init prints it
MARKED_GOOD: Final = re.compile(
    r"SFU-VM: mark-good: .*slot ([AB]) (confirmed|trial) sequence (\d+) floor (\d+)\n")
MIB: Final = 1 << 20


def _die_with_parent() -> None:
    """QEMU and swtpm get SIGKILL when the test process dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


class VmError(AssertionError):
    """The guest did not do what was awaited (the message carries the serial log's tail)."""


@dataclass(frozen=True)
class Device:
    """One emulated device at rest: its disk image and its TPM's persistent state."""

    root: Path

    @property
    def disk(self) -> Path:
        return self.root / "disk.img"

    @property
    def tpm_state(self) -> Path:
        return self.root / "tpm"

    @classmethod
    def blank(cls, root: Path, disk: Path) -> Device:
        """A factory-new device: the built disk and a manufactured, empty TPM."""
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(disk), str(root / "disk.img")], check=True)
        (root / "tpm").mkdir()
        subprocess.run(["swtpm_setup", "--tpm2", "--tpmstate", str((root / "tpm").resolve()),
                        "--overwrite"], check=True, capture_output=True)
        return cls(root)

    def copy(self, root: Path) -> Device:
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "--sparse=always", str(self.disk), str(root / "disk.img")],
                       check=True)
        shutil.copytree(self.tpm_state, root / "tpm")
        return Device(root)


def update_stick(path: Path, files: dict[str, Path]) -> Path:
    """The second disk: an ext2 file system holding `files` (name -> source)."""
    stage = path.with_suffix(".d")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    total = 0
    for name, source in files.items():
        shutil.copy(source, stage / name)
        total += source.stat().st_size
    size_kib = (total * 5 // 4 + 4 * MIB) // 1024
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext2", "-L", "sfu-update", "-d", str(stage),
                    str(path), f"{size_kib}k"], check=True, capture_output=True)
    shutil.rmtree(stage)
    return path


class Guest:
    """One power-on of a device: swtpm, then QEMU, the serial console on its stdio.

    QEMU runs with `-no-reboot`: a reset of the guest (`reboot -f`, a kernel panic) ends the
    QEMU process, and the reader thread powers the board on again at once (a new swtpm and
    QEMU on the same disk and TPM state), like a board whose reset line cycles its power. A
    warm reset inside one QEMU made GRUB's load of the kernel take 15-35 s instead of 3 s
    under TCG (docs/board.md, "The QEMU board"). The console is one stream across resets."""

    def __init__(self, device: Device, stick: Path | None, log: Path) -> None:
        self.device = device
        self.stick = stick
        self.log_path = log
        self._text = ""
        self._pos = 0
        self._lock = threading.Condition()
        self._stopping = False
        self._log = open(log, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._log.write(f"\n===== power on ({device.root}) =====\n")
        self._power_on()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _power_on(self) -> None:
        """Start swtpm, then QEMU (`started` is the moment QEMU was started)."""
        sock = Path(f"/tmp/sfu-vm-{secrets.token_hex(4)}.sock")
        self._swtpm = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate",
             f"dir={self.device.tpm_state.resolve()}",
             "--ctrl", f"type=unixio,path={sock}", "--terminate",
             "--flags", "startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self._swtpm.poll() is not None or time.monotonic() > deadline:
                self._swtpm.kill()
                _, err = self._swtpm.communicate()
                raise VmError(f"swtpm did not start: {err.decode(errors='replace')}")
            time.sleep(0.01)
        args = ["qemu-system-x86_64", "-accel", "tcg", "-m", "512", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                "-serial", "stdio", "-nic", "none", "-no-reboot",
                "-drive", f"if=none,id=disk,file={self.device.disk},format=raw,cache=unsafe",
                "-device", "virtio-blk-pci,drive=disk,bootindex=0",
                "-chardev", f"socket,id=chrtpm,path={sock}",
                "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
                "-device", "tpm-tis,tpmdev=tpm0"]
        if self.stick is not None:
            args += ["-drive", f"if=none,id=stick,file={self.stick},format=raw,readonly=on",
                     "-device", "virtio-blk-pci,drive=stick"]
        self.started = time.monotonic()
        self._qemu = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def _read(self) -> None:
        while True:
            qemu = self._qemu
            assert qemu.stdout is not None
            while chunk := qemu.stdout.read1(65536):  # type: ignore[attr-defined]
                self._append(chunk.decode("utf-8", errors="replace").replace("\r", ""))
            code = qemu.wait()
            with self._lock:
                if self._stopping or code != 0:
                    self._lock.notify_all()
                    return
                # the guest reset itself: its power is cycled (swtpm ends with its QEMU)
                self._wait_swtpm()
                self._log.write("\n===== reset: power on again =====\n")
                self._power_on()

    def _append(self, text: str) -> None:
        stamp = f"[{time.monotonic() - self.started:7.1f}s] "
        with self._lock:
            at_line_start = not self._text or self._text.endswith("\n")
            self._text += text
            lines = text.split("\n")
            self._log.write((stamp if at_line_start else "") + lines[0] + "".join(
                "\n" + (stamp + line if line else line) for line in lines[1:]))
            self._log.flush()
            self._lock.notify_all()

    def _wait_swtpm(self) -> None:
        try:
            self._swtpm.wait(10)
        except subprocess.TimeoutExpired:
            self._swtpm.kill()
            self._swtpm.wait()

    def tail(self, chars: int = 3000) -> str:
        with self._lock:
            return self._text[-chars:]

    def fail(self, what: str) -> VmError:
        return VmError(f"{what}\n--- serial console (last lines; all in {self.log_path}) ---\n"
                       f"{self.tail()}")

    def expect(self, pattern: re.Pattern[str] | str, timeout: float) -> re.Match[str]:
        """The next match of `pattern` in the console output after the previous one."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = regex.search(self._text, self._pos)
                if found:
                    self._pos = found.end()
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.fail(f"timed out after {timeout:.0f} s awaiting "
                                    f"{regex.pattern!r}")
                if not self._reader.is_alive():
                    raise self.fail(f"QEMU exited (code {self._qemu.poll()}) while awaiting "
                                    f"{regex.pattern!r}")
                self._lock.wait(min(left, 1.0))

    def send(self, line: str) -> None:
        assert self._qemu.stdin is not None
        try:
            self._qemu.stdin.write(line.encode() + b"\n")
            self._qemu.stdin.flush()
        except BrokenPipeError:
            raise self.fail(f"QEMU is gone; could not send {line!r}") from None

    def run(self, command: str, timeout: float = 300) -> tuple[int, str]:
        """Run a shell command in the guest: its exit code and output."""
        nonce = secrets.token_hex(4)
        with self._lock:
            self._pos = len(self._text)
            start = self._pos
        line = f"{{ {command.strip()} ; }} 2>&1; printf '\\n@@%s:%d@@\\n' {nonce} $?"
        self.send(line)
        found = self.expect(rf"@@{nonce}:(\d+)@@", timeout)
        with self._lock:
            output = self._text[start:found.start()]
        return int(found.group(1)), output.replace(line, "", 1).strip("\n")  # a late echo

    def check(self, command: str, timeout: float = 300) -> str:
        code, output = self.run(command, timeout)
        if code != 0:
            raise self.fail(f"`{command}` exited {code}:\n{output}")
        return output

    def json(self, command: str, timeout: float = 300) -> Any:
        output = self.check(command, timeout)
        found = re.search(r"^\{$.*^\}$", output, re.MULTILINE | re.DOTALL)  # emit_json's
        if found is None:
            raise self.fail(f"`{command}` printed no JSON:\n{output}")
        return json.loads(found.group(0))

    def ready(self, timeout: float = 420) -> tuple[str, int]:
        """Wait for the init's `ready` (after the agent and mark-good): (slot, version)."""
        found = self.expect(READY, timeout)
        return found.group(1), int(found.group(2))

    def reboot(self) -> None:
        """A clean reboot (what `systemctl reboot` would do: sync, then reset)."""
        self.send("sync; reboot -f")

    def power_cut(self) -> None:
        """kill -9 of QEMU; swtpm terminates with it (the TPM's power)."""
        with self._lock:
            self._stopping = True
            self._qemu.send_signal(signal.SIGKILL)
        self._shutdown()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            if self._qemu.poll() is None:
                self._qemu.kill()
        self._shutdown()

    def _shutdown(self) -> None:
        self._reader.join(30)
        self._qemu.wait()
        self._wait_swtpm()
        self._log.close()
