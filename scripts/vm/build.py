#!/usr/bin/env python3
"""Build the QEMU board (docs/board.md, "The QEMU board") from Debian packages and PyPI wheels.

    python scripts/vm/build.py [--out build/vm]

Downloads (cached in OUT/debs and OUT/wheels, never anything else): the Debian packages below
with `apt-get download`, the wheels of sfupdate's dependencies with `pip download`. Assembles,
without root, loop devices or emulation (the guest is x86_64 like the host):

    OUT/disk.img      GPT: bios (GRUB's core.img), boot (ext2: grub.cfg, grubenv),
                      rootfs-a (slot A = the v1 image), rootfs-b (empty), data (ext4:
                      Python, tpm2-pytss, grub-editenv, sfupdate, /etc/sfupdate, the state)
    OUT/slot-root/    the slot root file system every firmware version is made from
                      (`slot_image()` builds one version: kernel, initramfs, busybox, init,
                      /etc/sfu-version, /etc/sfu-health)
    OUT/v1.img        the first firmware (version 1, healthy)

Idempotent: downloads are kept; the assembled files are rebuilt only when this script, the
guest files next to it or the sfupdate sources change (OUT/stamp).
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent.parent
SRC: Final = REPO / "src" / "sfupdate"

# The guest's user space (Debian bookworm): Python 3.11, tpm2-pytss (the TPM, in-process; the
# linux extra) and grub-editenv, with the shared libraries they load. Checked at build time:
# every ELF file must resolve.
SYSTEM_DEBS: Final = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "libtss2-fapi1", "libcurl4",
    "grub-common", "libtss2-esys-3.0.2-0", "libtss2-mu0", "libtss2-rc0", "libtss2-sys1",
    "libtss2-tctildr0", "libtss2-tcti-device0", "libc6", "libcrypt1", "libssl3", "libffi8",
    "zlib1g", "libexpat1", "libbz2-1.0", "liblzma5", "libuuid1", "libsqlite3-0", "libncursesw6",
    "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libdb5.3", "libcom-err2",
    "libkeyutils1", "libgssapi-krb5-2", "libk5crypto3", "libkrb5-3", "libkrb5support0",
    "libcurl3-gnutls", "libbrotli1", "libgmp10", "libgnutls30", "libhogweed6", "libidn2-0",
    "libldap-2.5-0", "libnettle8", "libnghttp2-14", "libp11-kit0", "libpcre2-8-0", "libpsl5",
    "librtmp1", "libsasl2-2", "libssh2-1", "libtasn1-6", "libunistring2", "libzstd1", "libudev1",
    "libdevmapper1.02.1", "libselinux1", "libjson-c5", "libefiboot1", "libefivar1",
    "libfreetype6", "libfuse3-3", "libpng16-16", "libbsd0", "libmd0", "libgcc-s1",
)
BOOT_DEBS: Final = ("busybox-static", "grub-pc-bin")
# Debian's cloud kernel: LZ4-compressed (the generic one is XZ, whose decompression alone
# took 7 s of every power-on under TCG; LZ4 takes under 1 s), ext4 and the TPM drivers built in
KERNEL_META: Final = "linux-image-cloud-amd64"
# kernel modules the initramfs loads (their dependencies are added from .modinfo)
MODULES: Final = ("virtio_pci", "virtio_blk")
GRUB_MODULES: Final = (
    "biosdisk", "part_gpt", "ext2", "normal", "configfile", "linux", "loadenv", "test", "echo",
    "search", "search_label", "serial", "terminal", "gzio", "cat", "sleep", "halt", "reboot",
)

MIB: Final = 1 << 20
SLOT_IMAGE_SIZE: Final = 20 * MIB   # the firmware image (ext2) a slot holds
SLOT_PART_SIZE: Final = 24 * MIB    # >= image + the linux backend's header area (2 MiB + 4 KiB)
BOOT_SIZE: Final = 8 * MIB
DATA_SIZE: Final = 320 * MIB
BIOS_START: Final = 2048            # sectors; the bios_grub partition holds core.img

# The partition table: (name, size, GPT type); data takes what DATA_SIZE says.
PARTITIONS: Final = (
    ("bios", 1 * MIB, "21686148-6449-6E6F-744E-656564454649"),
    ("boot", BOOT_SIZE, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("rootfs-a", SLOT_PART_SIZE, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("rootfs-b", SLOT_PART_SIZE, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
    ("data", DATA_SIZE, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
)
GUEST_PYTHON: Final = "/usr/bin/python3.11"
SITE: Final = "usr/lib/python3/dist-packages"


def log(msg: str) -> None:
    print(f"vm-build: {msg}", file=sys.stderr, flush=True)


def run(args: list[str], cwd: Path | None = None, data: bytes | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, input=data, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"vm-build: {' '.join(args[:4])}... failed ({done.returncode}):\n"
                         f"{done.stderr.decode(errors='replace')[-2000:]}")
    return done.stdout.decode(errors="replace")


# ---------------------------------------------------------------- downloads (cached)

def kernel_package() -> str:
    out = run(["apt-cache", "depends", KERNEL_META])
    found = re.search(r"Depends: (linux-image-[0-9][^\s]*)", out)
    if not found:
        raise SystemExit(f"vm-build: {KERNEL_META} names no kernel package")
    return found.group(1)


def debs(out: Path, names: list[str]) -> dict[str, Path]:
    """`apt-get download` each package not yet in OUT/debs; name -> .deb file."""
    where = out / "debs"
    where.mkdir(parents=True, exist_ok=True)

    def have(name: str) -> Path | None:
        found = sorted(where.glob(f"{name}_*.deb"))
        return found[-1] if found else None

    missing = [n for n in names if have(n) is None]
    if missing:
        log(f"apt-get download {len(missing)} packages")
        os.chmod(where, 0o777)  # apt's _apt user downloads into it
        run(["apt-get", "download", "-q", *missing], cwd=where)
    result = {}
    for name in names:
        deb = have(name)
        if deb is None:
            raise SystemExit(f"vm-build: apt-get download {name} produced no .deb")
        result[name] = deb
    return result


def requirements() -> list[str]:
    """sfupdate's dependencies and its `linux` extra (the board's TPM: tpm2-pytss)."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["linux"]]


def wheels(out: Path) -> Path:
    """The wheels of sfupdate's dependencies (binary only: the guest has no compiler), for the
    host's CPython 3.11 on x86_64 glibc, the guest's too: `pip download`, except tpm2-pytss,
    which PyPI has as source only: `pip wheel` builds it here, against the host's TSS
    libraries (libtss2-dev), Debian bookworm's, the guest's. (Debian's own python3-tpm2-pytss
    1.2 cannot load next to cryptography 50: it subclasses a class that became Rust's.)"""
    where = out / "wheels"
    stamp = where / ".requirements"
    wanted = "\n".join(requirements())
    if stamp.exists() and stamp.read_text() == wanted:
        return where
    where.mkdir(parents=True, exist_ok=True)
    built = [r for r in requirements() if r.startswith("tpm2-pytss")]
    log("pip wheel (build) " + " ".join(built))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-binary", "tpm2-pytss",
         "-w", str(where), *built])
    log("pip download wheels")
    run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:",
         "--find-links", str(where), "--python-version", "3.11",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
         "--platform", "linux_x86_64", "--implementation", "cp",
         "-d", str(where), *requirements()])
    stamp.write_text(wanted)
    return where


# ---------------------------------------------------------------- the guest's user space

def extract(deb: Path, into: Path, members: list[str] | None = None) -> None:
    if members is None:
        run(["dpkg-deb", "-x", str(deb), str(into)])
        return
    into.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    done = subprocess.run(["tar", "-x", "-C", str(into), "--wildcards", *members],
                          stdin=tar.stdout, capture_output=True, check=False)
    tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise SystemExit(f"vm-build: extracting {deb.name}: {done.stderr.decode()[-500:]}")


def check_elf(root: Path) -> None:
    """Every ELF executable and library of the guest tree must find its libraries there."""
    loader = root / "lib64" / "ld-linux-x86-64.so.2"
    paths = ":".join(str(root / p) for p in ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"))
    missing: set[str] = set()
    for sub in ("usr/bin", "usr/lib/python3.11/lib-dynload", "usr/lib/x86_64-linux-gnu",
                SITE):
        for path in (root / sub).rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            done = subprocess.run([str(loader), "--library-path", paths, "--list", str(path)],
                                  capture_output=True, check=False)
            for line in done.stdout.decode(errors="replace").splitlines():
                name, arrow, where = line.strip().partition(" => ")
                # resolved outside the guest tree (the host's) or not at all
                if arrow and not where.startswith(str(root)):
                    missing.add(f"{name} (for {path.relative_to(root)})")
    if missing:
        raise SystemExit("vm-build: the guest lacks libraries; add their packages to "
                         "SYSTEM_DEBS:\n  " + "\n  ".join(sorted(missing)))


def system_tree(out: Path, packages: dict[str, Path], wheel_dir: Path) -> Path:
    """/usr, /lib, /lib64 of the guest: Debian packages, the wheels and sfupdate itself."""
    root = out / "sys"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name in SYSTEM_DEBS:
        extract(packages[name], root)
    for junk in ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
                 "usr/share/grub", "usr/lib/grub", "usr/share/lintian"):
        shutil.rmtree(root / junk, ignore_errors=True)
    for tools in ("usr/bin", "usr/sbin"):  # only the programs the guest runs
        for path in (root / tools).iterdir():
            if not re.fullmatch(r"python3\.11|grub-editenv", path.name):
                path.unlink()
    site = root / SITE
    site.mkdir(parents=True, exist_ok=True)
    log("pip install into the guest tree")
    run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
         str(wheel_dir), "--no-compile", "--target", str(site), *requirements()])
    shutil.rmtree(site / "bin", ignore_errors=True)
    shutil.copytree(SRC, site / "sfupdate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sfu = root / "usr" / "bin" / "sfu"
    sfu.write_text(f"#!{GUEST_PYTHON}\nimport sys\nfrom sfupdate.cli.main import main\n"
                   "sys.exit(main())\n")
    sfu.chmod(0o755)
    check_elf(root)
    # byte-compile everything now: a first run in the emulated guest would take minutes
    log("byte-compile the guest's Python")
    for tree in (root / "usr/lib/python3.11", site):
        run([sys.executable, "-m", "compileall", "-q", "-j", "0",
             "--invalidation-mode", "unchecked-hash", str(tree)])
    return root


# ---------------------------------------------------------------- kernel and initramfs

def kernel(out: Path, deb: Path) -> tuple[Path, list[Path]]:
    """vmlinuz and the modules MODULES need, in load order (dependencies first)."""
    where = out / "kernel"
    if where.exists():
        shutil.rmtree(where)
    extract(deb, where, ["./boot/vmlinuz-*", "./lib/modules/*/kernel/drivers/block/*",
                         "./lib/modules/*/kernel/drivers/virtio/*"])
    vmlinuz = next((where / "boot").glob("vmlinuz-*"))
    by_name = {p.stem.replace("-", "_"): p for p in where.rglob("*.ko")}

    def depends(ko: Path) -> list[str]:
        found = re.search(rb"\0depends=([^\0]*)\0", b"\0" + ko.read_bytes())
        return [d for d in (found.group(1).decode().split(",") if found else []) if d]

    order: list[Path] = []

    def add(name: str) -> None:
        ko = by_name.get(name)
        if ko is None:
            raise SystemExit(f"vm-build: kernel module {name} not in {deb.name}")
        if ko in order:
            return
        for dep in depends(ko):
            add(dep)
        order.append(ko)

    for name in MODULES:
        add(name)
    return vmlinuz, order


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, content); directories have mode 0o40755."""
    out = io.BytesIO()

    def pad(n: int) -> None:
        out.write(b"\0" * ((4 - n % 4) % 4))

    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        head = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
        out.write(head + raw)
        pad(len(head) + len(raw))
        out.write(data)
        pad(len(data))
    return out.getvalue()


def initramfs(busybox: Path, modules: list[Path]) -> bytes:
    entries: list[tuple[str, int, bytes]] = [
        (d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "newroot", "lib",
                                     "lib/modules")]
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("init", 0o100755, (HERE / "guest" / "initramfs-init").read_bytes()))
    load = "".join(f"{m.name}\n" for m in modules).encode()
    entries.append(("lib/modules/load-order", 0o100644, load))
    entries += [(f"lib/modules/{m.name}", 0o100644, m.read_bytes()) for m in modules]
    return gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)


# ---------------------------------------------------------------- slot images

def slot_root(out: Path, busybox: Path, vmlinuz: Path, initrd: bytes) -> Path:
    """Everything of a firmware version but its version marker and health."""
    root = out / "slot-root"
    if root.exists():
        shutil.rmtree(root)
    for d in ("bin", "sbin", "boot/efi", "etc", "proc", "sys", "dev", "run", "tmp", "data",
              "media/update", "root"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run([str(busybox), "--list"]).split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    shutil.copy2(vmlinuz, root / "boot" / "vmlinuz")
    (root / "boot" / "initrd.img").write_bytes(initrd)
    for name in ("init", "sfu-health"):
        shutil.copy2(HERE / "guest" / name, root / "sbin" / name)
        (root / "sbin" / name).chmod(0o755)
    # the system's programs and state live on the data partition (mounted at /data)
    for link in ("usr", "lib", "lib64", "var"):
        (root / link).symlink_to(f"/data/sys/{link}" if link != "var" else "/data/var")
    (root / "etc" / "sfupdate").symlink_to("/data/etc/sfupdate")
    users = sysusers()
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        + "".join(f"{u}:x:{uid}:{uid}:{u}:/nonexistent:/bin/sh\n" for u, uid in users.items()))
    members = {g: ",".join(m for m, gs in memberships().items() if g in gs)
               for g in [*users, "tss"]}
    gids = {**users, "tss": 900}
    (root / "etc" / "group").write_text(
        "root:x:0:\n" + "".join(f"{g}:x:{gids[g]}:{members[g]}\n" for g in gids))
    return root


def sysusers() -> dict[str, int]:
    """The users the shipped sysusers.d file creates, with fixed ids for the guest."""
    text = (SRC / "secure/board/linux/deploy/systemd/sfupdate.sysusers").read_text()
    names = [line.split()[1] for line in text.splitlines() if line.startswith("u ")]
    return {name: 901 + i for i, name in enumerate(names)}


def memberships() -> dict[str, list[str]]:
    text = (SRC / "secure/board/linux/deploy/systemd/sfupdate.sysusers").read_text()
    groups: dict[str, list[str]] = {"sfupdate-agent": ["tss"]}  # the units' SupplementaryGroups
    for line in text.splitlines():
        if line.startswith("m "):
            _, user, group = line.split()[:3]
            groups.setdefault(user, []).append(group)
    return groups


def slot_image(out: Path, version: int, healthy: bool = True, into: Path | None = None) -> Path:
    """The firmware of `version`: an ext2 image of SLOT_IMAGE_SIZE (GRUB reads the kernel
    from it; the kernel mounts it read-only as the root file system)."""
    root = out / "slot-root"
    (root / "etc" / "sfu-version").write_text(f"{version}\n")
    (root / "etc" / "sfu-health").write_text("ok\n" if healthy else "fail\n")
    image = into or out / f"v{version}{'' if healthy else '-unhealthy'}.img"
    image.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext2", "-b", "4096", "-L", "sfu-rootfs", "-m", "0",
         "-E", "root_owner=0:0", "-d", str(root), str(image), f"{SLOT_IMAGE_SIZE // 1024}k"])
    return image


# ---------------------------------------------------------------- boot, data, disk

def boot_partition(out: Path, grub_dir: Path, parts: dict[str, int]) -> Path:
    root = out / "boot-root"
    if root.exists():
        shutil.rmtree(root)
    (root / "boot" / "grub").mkdir(parents=True)
    (root / "EFI" / "sfu").mkdir(parents=True)
    index = {name: i + 1 for i, (name, _, _) in enumerate(PARTITIONS)}
    board_cfg = (HERE / "guest" / "grub.cfg").read_text()
    board_cfg = board_cfg.replace("@PART_A@", str(index["rootfs-a"])) \
        .replace("@PART_B@", str(index["rootfs-b"]))
    (root / "boot" / "grub" / "grub.cfg").write_text(board_cfg)
    shutil.copy2(SRC / "secure/board/linux/deploy/grub/grub.cfg",
                 root / "boot" / "grub" / "sfupdate.cfg")
    env = root / "EFI" / "sfu" / "grubenv"
    run(["grub-editenv", str(env), "create"])
    run(["grub-editenv", str(env), "set", "BOOT_ORDER=A", "BOOT_A_LEFT=3", "BOOT_B_LEFT=0"])
    image = out / "boot.img"
    image.unlink(missing_ok=True)
    # ext4 with its journal: the agent rewrites grubenv here, and an ext2 left unclean by a
    # power cut reported "no space left" to grub-editenv (found by the power-cut test)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "1024", "-L", "sfuboot", "-d", str(root),
         str(image), f"{BOOT_SIZE // 1024}k"])
    return image


def core_img(out: Path, grub_dir: Path) -> Path:
    core = out / "core.img"
    index = [name for name, _, _ in PARTITIONS].index("boot") + 1
    run(["grub-mkimage", "-O", "i386-pc", "-d", str(grub_dir), "-o", str(core),
         "-p", f"(hd0,gpt{index})/boot/grub", *GRUB_MODULES])
    return core


def data_partition(out: Path, sys_root: Path) -> Path:
    root = out / "data-root"
    if root.exists():
        shutil.rmtree(root)
    (root / "etc" / "sfupdate").mkdir(parents=True)
    (root / "var" / "lib" / "sfupdate").mkdir(parents=True)
    (root / "var" / "lib" / "sfupdate-client").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    shutil.copy2(HERE / "guest" / "device.toml", root / "etc" / "sfupdate" / "device.toml")
    shutil.copytree(sys_root, root / "sys", symlinks=True)
    image = out / "data.img"
    image.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "data", "-E", "root_owner=0:0",
         "-d", str(root), str(image), f"{DATA_SIZE // 1024}k"])
    shutil.rmtree(root)
    return image


def layout() -> dict[str, tuple[int, int]]:
    """name -> (byte offset, byte size), the GPT this script writes."""
    offset = BIOS_START * 512
    result = {}
    for name, size, _ in PARTITIONS:
        result[name] = (offset, size)
        offset += size
    return result


def copy_into(disk: Path, offset: int, source: Path) -> None:
    """Copy source into the disk at offset, leaving zero blocks as holes."""
    with open(source, "rb") as src, open(disk, "r+b") as dst:
        pos = offset
        while chunk := src.read(MIB):
            if chunk.count(0) != len(chunk):
                dst.seek(pos)
                dst.write(chunk)
            pos += len(chunk)


def disk(out: Path, grub_dir: Path, core: Path, boot: Path, slot_a: Path, data: Path) -> Path:
    parts = layout()
    image = out / "disk.img"
    image.unlink(missing_ok=True)
    end = max(off + size for off, size in parts.values())
    with open(image, "wb") as f:
        f.truncate(end + MIB)
    script = "label: gpt\nunit: sectors\nfirst-lba: 34\n" + "".join(
        f"start={parts[n][0] // 512}, size={parts[n][1] // 512}, type={t}, name={n}\n"
        for n, _, t in PARTITIONS)
    run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)], data=script.encode())
    check = json.loads(run(["sfdisk", "--json", str(image)]))["partitiontable"]["partitions"]
    if [p["name"] for p in check] != [n for n, _, _ in PARTITIONS]:
        raise SystemExit(f"vm-build: sfdisk wrote {check}")
    # GRUB for BIOS, what grub-bios-setup does: boot.img in the MBR's code area pointing at
    # core.img, whose first sector's block list points at the rest of it.
    bios_lba = parts["bios"][0] // 512
    boot_img = bytearray((grub_dir / "boot.img").read_bytes())
    boot_img[0x5C:0x64] = bios_lba.to_bytes(8, "little")       # GRUB_BOOT_MACHINE_KERNEL_SECTOR
    core_data = bytearray(core.read_bytes())
    if len(core_data) > parts["bios"][1]:
        raise SystemExit("vm-build: core.img does not fit the bios partition")
    core_data[0x200 - 12:0x200 - 4] = (bios_lba + 1).to_bytes(8, "little")  # blocklist start
    with open(image, "r+b") as f:
        f.write(bytes(boot_img[:440]))
        f.seek(parts["bios"][0])
        f.write(bytes(core_data))
    copy_into(image, parts["boot"][0], boot)
    copy_into(image, parts["rootfs-a"][0], slot_a)
    copy_into(image, parts["data"][0], data)
    return image


# ---------------------------------------------------------------- main

def inputs_digest() -> str:
    h = hashlib.sha256()
    files = [Path(__file__), REPO / "pyproject.toml", *sorted((HERE / "guest").iterdir()),
             *sorted(p for p in SRC.rglob("*") if p.is_file() and "__pycache__" not in p.parts)]
    for path in files:
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build(out: Path) -> Path:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time in OUT
        return _build(out)


def _build(out: Path) -> Path:
    stamp = out / "stamp"
    digest = inputs_digest()
    if stamp.exists() and stamp.read_text() == digest and (out / "disk.img").exists():
        return out
    stamp.unlink(missing_ok=True)
    kernel_deb = kernel_package()
    packages = debs(out, [*SYSTEM_DEBS, *BOOT_DEBS, kernel_deb])
    wheel_dir = wheels(out)
    sys_root = system_tree(out, packages, wheel_dir)
    tools = out / "tools"
    if tools.exists():
        shutil.rmtree(tools)
    extract(packages["busybox-static"], tools)
    extract(packages["grub-pc-bin"], tools)
    busybox = tools / "bin" / "busybox"
    grub_dir = tools / "usr" / "lib" / "grub" / "i386-pc"
    vmlinuz, modules = kernel(out, packages[kernel_deb])
    slot_root(out, busybox, vmlinuz, initramfs(busybox, modules))
    v1 = slot_image(out, 1)
    boot = boot_partition(out, grub_dir, {})
    data = data_partition(out, sys_root)
    disk(out, grub_dir, core_img(out, grub_dir), boot, v1, data)
    for done in (boot, data, sys_root):
        if done.is_dir():
            shutil.rmtree(done)
        else:
            done.unlink()
    stamp.write_text(digest)
    log(f"built {out / 'disk.img'}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "vm")
    args = parser.parse_args()
    build(args.out)


if __name__ == "__main__":
    main()
