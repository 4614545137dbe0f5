"""Our sign and verify beside the peers' package and verify, on one generated file, in one run.

    python benchmarks/bench_peers.py [--size-mib 256] [--runs 3]

Every figure is a ratio to `openssl dgst -sha256` of the same file, measured in the same run
(before and after the tools, so that a busy machine shows as a spread). A peer that is not
installed, or whose setup fails, is listed with the reason; `benchmarks/install-peers.sh`
installs them. Each verify is also run once on a copy of its artifact with one byte flipped in
the middle (inside the payload), to show what it really checks.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import (
    HAVE_GNU_TIME,
    CommandFailed,
    Sample,
    bench_main,
    make_random_file,
    run_measured,
    summarise,
    table,
)

HERE = Path(__file__).resolve().parent
IMGTOOL_VENV = Path(os.environ.get("IMGTOOL_VENV", HERE / "work" / "imgvenv"))
MIB = 1024 * 1024


class Unavailable(Exception):
    """A peer, or one of its operations, that cannot run here; the message says why."""


@dataclass
class Op:
    """One timed command. `before` runs untimed before every run (e.g. remove the output)."""

    label: str
    argv: list[str]
    checks: str
    before: Callable[[], None] | None = None
    artifact: Path | None = None  # verify ops: the file the tamper check flips a byte in
    min_runs: int = 0  # for tools whose time varies from run to run


@dataclass
class Peer:
    tool: str
    version: str
    notes: str
    package: list[Op] = field(default_factory=list)
    verify: list[Op] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (operation, reason)


@dataclass
class Row:
    tool: str
    op: Op
    result: Sample | None = None
    error: str = ""
    tamper: str = "—"


@dataclass
class Context:
    payload: Path
    size: int
    env: Mapping[str, str]


def run_once(argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None,
             check: bool = True) -> tuple[int, Sample]:
    code, sample, _ = run_measured(argv, env, cwd, check)
    return code, sample


def measure(op: Op, env: Mapping[str, str], runs: int) -> Sample:
    """Median of the runs. A failed run is run again, and counted, while failures do not
    outnumber successes by more than one (swupdate -c sometimes exits 1 after success)."""
    samples: list[Sample] = []
    failures = 0
    while len(samples) < max(runs, op.min_runs):
        if op.before:
            op.before()
        try:
            samples.append(run_once(op.argv, env)[1])
        except CommandFailed:
            failures += 1
            if failures > len(samples) + 1:
                raise
    return summarise(samples, failures)


def tamper_check(op: Op, env: Mapping[str, str]) -> str:
    """Flip one byte in the middle of the artifact, run the verify once, restore the byte."""
    assert op.artifact is not None
    offset = op.artifact.stat().st_size // 2
    with open(op.artifact, "r+b") as f:
        f.seek(offset)
        original = f.read(1)
        f.seek(offset)
        f.write(bytes([original[0] ^ 0x01]))
    try:
        if op.before:
            op.before()
        code, _ = run_once(op.argv, env, check=False)
    finally:
        with open(op.artifact, "r+b") as f:
            f.seek(offset)
            f.write(original)
    return f"yes (rc {code})" if code != 0 else "**no** (rc 0)"


# --- setup helpers -------------------------------------------------------------------------

def need(*names: str, package: str) -> dict[str, str]:
    found = {name: shutil.which(name) for name in names}
    absent = [name for name, path in found.items() if path is None]
    if absent:
        raise Unavailable(f"`{'`, `'.join(absent)}` not found (Debian package {package}; "
                          "run benchmarks/install-peers.sh as root)")
    return {name: path for name, path in found.items() if path is not None}


def setup(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> None:
    try:
        run_once(argv, env, cwd=cwd)
    except CommandFailed as exc:
        raise Unavailable(f"setup `{' '.join(argv[:3])} ...` failed: {exc}") from exc


def link_payload(ctx: Context, target: Path) -> None:
    """The peer reads the very same bytes: a hard link, or a copy across filesystems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(ctx.payload, target)
    except OSError:
        shutil.copyfile(ctx.payload, target)


def unlinker(*paths: Path) -> Callable[[], None]:
    def remove() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    return remove


def deb_version(package: str) -> str:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], check=False,
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "?"


def ec_cert(work: Path, env: Mapping[str, str]) -> None:
    """A self-signed P-256 certificate (key.pem, cert.pem) for the CMS-based peers."""
    setup(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
           "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
           "-subj", "/O=Bench/CN=sfu-bench", "-days", "30"], work, env)


# --- the tools -----------------------------------------------------------------------------

def sfu_peer(ctx: Context, work: Path) -> Peer:
    sfu = Path(sys.executable).with_name("sfu")
    if not sfu.exists():
        found = shutil.which("sfu")
        if found is None:
            raise Unavailable("`sfu` not found: run from the project's .venv")
        sfu = Path(found)
    setup([str(sfu), "keys", "generate", "--alg", "ES256", "-o", "k.pem"], work, ctx.env)
    setup([str(sfu), "keys", "public", "k.pem", "-o", "pub.pem"], work, ctx.env)
    out, small = work / "fw.sfui", work / "small.sfui"
    (work / "small.bin").write_bytes(os.urandom(4096))
    sign = [str(sfu), "sign", "--force", "--key", str(work / "k.pem"), "--sequence", "1",
            "--vendor", "example.com", "--class", "bench"]
    setup([*sign, str(work / "small.bin"), "-o", str(small)], work, ctx.env)
    verify = [str(sfu), "verify", "--key", str(work / "pub.pem")]
    return Peer(
        "sfu", importlib.metadata.version("sfupdate"),
        "sign reads the file once: it copies the payload to its place in the envelope while "
        "hashing it, writes the signed header in front at the end, and fsyncs the result "
        "before renaming it into place, hence wall time above CPU time. verify checks the "
        "COSE signature over the manifest, then streams the payload counting bytes against "
        "image-size and compares its SHA-256 at the end. Each run pays about 0.15 s of "
        "Python start-up and imports, shown by the 4 KiB row.",
        package=[Op("sfu sign (ES256)", [*sign, str(ctx.payload), "-o", str(out)],
                    "SUIT manifest with SHA-256 + size, COSE_Sign1 ES256, payload integrated",
                    before=unlinker(out))],
        verify=[Op("sfu verify", [*verify, str(out)],
                   "signature, manifest, then payload size and SHA-256", artifact=out),
                Op("sfu verify, 4 KiB image (fixed cost)", [*verify, str(small)],
                   "same, on a 4 KiB image: Python start-up and imports")])


def rauc_peer(ctx: Context, work: Path) -> Peer:
    tools = need("rauc", "openssl", package="rauc")
    ec_cert(work, ctx.env)
    peer = Peer(
        "RAUC", deb_version("rauc"),
        "A bundle is a squashfs of the content plus a CMS signature. verity: the signed "
        "manifest carries the dm-verity root hash, so `rauc info` checks only the manifest and "
        "that root hash (the payload is not read; a flipped payload byte passes), while "
        "`rauc extract` checks the verity tree, then unsquashfs writes the files out. plain: "
        "the CMS signature covers the whole squashfs, so `rauc info` hashes it all. "
        "mksquashfs compresses by default (gzip, multithreaded), which random data defeats; "
        "the `-noI -noD -noF -noX` row builds the same bundle uncompressed.")
    if shutil.which("mksquashfs") is None:
        reason = "`mksquashfs` not found (Debian package squashfs-tools)"
        peer.missing += [("rauc bundle (all formats)", reason),
                         ("rauc info / extract", "no bundle: " + reason)]
        return peer
    bundles = {}
    for fmt in ("verity", "plain"):
        content = work / f"content-{fmt}"
        link_payload(ctx, content / "rootfs.img")
        (content / "manifest.raucm").write_text(
            "[update]\ncompatible=sfu-bench-board\nversion=1.2.3\n\n"
            f"[bundle]\nformat={fmt}\n\n[image.rootfs]\nfilename=rootfs.img\n")
        bundles[fmt] = work / f"{fmt}.raucb"
    cert = ["--cert", str(work / "cert.pem"), "--key", str(work / "key.pem")]
    keyring = f"--keyring={work / 'cert.pem'}"
    raw = work / "verity-uncompressed.raucb"
    outdir = work / "extracted"
    rauc = tools["rauc"]
    peer.package = [
        Op("rauc bundle, verity", [rauc, "bundle", *cert, str(work / "content-verity"),
                                   str(bundles["verity"])],
           "CMS (P-256) over manifest; dm-verity tree over squashfs (gzip)",
           before=unlinker(bundles["verity"])),
        Op("rauc bundle, verity, uncompressed",
           [rauc, "bundle", *cert, "--mksquashfs-args=-noI -noD -noF -noX",
            str(work / "content-verity"), str(raw)],
           "as above, squashfs not compressed", before=unlinker(raw)),
        Op("rauc bundle, plain", [rauc, "bundle", *cert, str(work / "content-plain"),
                                  str(bundles["plain"])],
           "CMS (P-256) over the whole squashfs (gzip)", before=unlinker(bundles["plain"])),
    ]
    peer.verify = [
        Op("rauc info, verity", [rauc, "info", keyring, str(bundles["verity"])],
           "manifest signature + verity root hash only; payload not read",
           artifact=bundles["verity"]),
        Op("rauc extract, verity", [rauc, "extract", keyring, str(bundles["verity"]),
                                    str(outdir)],
           "signature, verity tree over the payload, then unsquashfs to disk",
           before=unlinker(outdir), artifact=bundles["verity"]),
        Op("rauc info, plain", [rauc, "info", keyring, str(bundles["plain"])],
           "CMS signature over the whole squashfs", artifact=bundles["plain"]),
    ]
    return peer


SW_DESCRIPTION = """software =
{{
	version = "1.2.3";
	hardware-compatibility: [ "1.0" ];
	images: ( {{ filename = "{name}"; device = "{device}"; type = "raw"; sha256 = "$SHA"; }} );
}}
"""

# The hash uses `openssl dgst` (not sha256sum, 4x slower here) so the packer is not penalised.
SWU_PACK = """set -eu
cd "$1"
SHA=$(openssl dgst -sha256 -r {name} | cut -d' ' -f1)
cat > sw-description <<EOF
{description}EOF
openssl cms -sign -in sw-description -out sw-description.sig -signer ../cert.pem \\
    -inkey ../key.pem -outform DER -nosmimecap -binary
printf 'sw-description\\nsw-description.sig\\n{name}\\n' | cpio -o -H crc --quiet > "$2"
"""


def swupdate_peer(ctx: Context, work: Path) -> Peer:
    tools = need("swupdate", "cpio", "openssl", package="swupdate, cpio")
    ec_cert(work, ctx.env)
    peer = Peer(
        "SWUpdate", deb_version("swupdate"),
        "A .swu is a cpio archive: sw-description (which holds each image's SHA-256) and its "
        "CMS signature come first, then the images. Packing here is a shell script (openssl "
        "dgst, openssl cms, cpio), as SWUpdate ships no packer. `swupdate -c` checks the "
        "signature and hardware compatibility, then streams and hashes every image without "
        "installing it. Its run time is bimodal: a `-c` run ends either at once or after a 1 s "
        "sleep in its IPC status poll, by a race (about half of the runs on a 4 KiB image; "
        "nearly all on a large one), hence at least 7 runs and the min–max. Now and then (1 of "
        "40 runs in a trial here) it exits 1 after logging success; such a run is retried and "
        "counted in the table.")
    for name, payload_dir in (("small", work / "swu-small"), ("full", work / "swu")):
        payload_dir.mkdir()
        image = payload_dir / "rootfs.img"
        if name == "full":
            link_payload(ctx, image)
        else:
            image.write_bytes(os.urandom(4096))
        script = work / f"pack-{name}.sh"
        description = SW_DESCRIPTION.format(name="rootfs.img", device=work / "target.img")
        script.write_text(SWU_PACK.format(name="rootfs.img", description=description))
    swu, small = work / "update.swu", work / "small.swu"
    setup(["sh", str(work / "pack-small.sh"), str(work / "swu-small"), str(small)], work,
          ctx.env)
    # `env` execs swupdate with its IPC sockets in the peer's directory, not the shared /tmp.
    check = ["env", f"TMPDIR={work}", tools["swupdate"], "-c", "-k", str(work / "cert.pem"),
             "-H", "board:1.0", "-i"]
    peer.package = [Op("pack .swu (openssl dgst + cms + cpio)",
                       ["sh", str(work / "pack-full.sh"), str(work / "swu"), str(swu)],
                       "CMS (P-256) over sw-description, which holds the image SHA-256",
                       before=unlinker(swu))]
    peer.verify = [
        Op("swupdate -c", [*check, str(swu)],
           "signature, hw compatibility, then image SHA-256 (streamed)", artifact=swu,
           min_runs=7),
        Op("swupdate -c, 4 KiB image (fixed cost)", [*check, str(small)],
           "same, on a 4 KiB image: the fixed cost", min_runs=7),
    ]
    return peer


def mender_peer(ctx: Context, work: Path) -> Peer:
    tools = need("mender-artifact", "openssl", package="mender-artifact")
    setup(["openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out",
           "ec-priv.pem"], work, ctx.env)
    setup(["openssl", "ec", "-in", "ec-priv.pem", "-pubout", "-out", "ec-pub.pem"], work,
          ctx.env)
    out = work / "u.mender"
    tool = tools["mender-artifact"]
    return Peer(
        "mender-artifact", deb_version("mender-artifact"),
        "An artifact is a tar: a manifest of SHA-256 sums of every member, its ECDSA signature, "
        "header and the payload (here not compressed). `validate` checks the signature over the "
        "manifest and the checksum of every member, payload included.",
        package=[Op("mender-artifact write rootfs-image",
                    [tool, "write", "rootfs-image", "-n", "rel-1.2.3", "-t", "sfu-bench-board",
                     "-f", str(ctx.payload), "-k", str(work / "ec-priv.pem"),
                     "--compression", "none", "--no-progress", "-o", str(out)],
                    "ECDSA P-256 over the manifest of SHA-256 sums; tar, not compressed",
                    before=unlinker(out))],
        verify=[Op("mender-artifact validate",
                   [tool, "validate", "-k", str(work / "ec-pub.pem"), str(out)],
                   "signature, then SHA-256 of every member", artifact=out)])


def imgtool_path() -> str:
    for candidate in (str(IMGTOOL_VENV / "bin" / "imgtool"), shutil.which("imgtool")):
        if candidate and Path(candidate).exists():
            return candidate
    raise Unavailable("`imgtool` not found (PyPI package imgtool; benchmarks/install-peers.sh "
                      f"puts it in {IMGTOOL_VENV})")


def imgtool_peer(ctx: Context, work: Path) -> Peer:
    imgtool = imgtool_path()
    version = subprocess.run([imgtool, "version"], check=False, capture_output=True,
                             text=True).stdout.strip() or "?"
    setup([imgtool, "keygen", "-k", "ec256.pem", "-t", "ecdsa-p256"], work, ctx.env)
    out = work / "app.signed.bin"
    slot = ctx.size + MIB  # header, TLVs and trailer fit in the extra MiB
    return Peer(
        "MCUboot imgtool", version,
        "imgtool (Python) reads the whole image into memory, prepends a header and appends "
        "TLVs: SHA-256 of header + image, key hash, ECDSA signature. `verify` recomputes the "
        "hash and checks the signature; MCUboot does the same on the device at boot.",
        package=[Op("imgtool sign (ecdsa-p256)",
                    [imgtool, "sign", "-k", str(work / "ec256.pem"), "--header-size", "0x200",
                     "--pad-header", "--align", "8", "--slot-size", hex(slot), "--version",
                     "1.2.3+4", "--security-counter", "auto", str(ctx.payload), str(out)],
                    "ECDSA P-256 over SHA-256 of header + image", before=unlinker(out))],
        verify=[Op("imgtool verify", [imgtool, "verify", "-k", str(work / "ec256.pem"), str(out)],
                   "SHA-256 of header + image, then the signature", artifact=out)])


FIT_ITS = """/dts-v1/;
/ {{
	description = "sfu bench";
	#address-cells = <1>;
	images {{
		kernel-1 {{
			data = /incbin/("{payload}");
			type = "kernel"; arch = "arm"; os = "linux"; compression = "none";
			load = <0x80000000>; entry = <0x80000000>;
			hash-1 {{ algo = "sha256"; }};
		}};
	}};
	configurations {{
		default = "conf-1";
		conf-1 {{
			kernel = "kernel-1";
			signature-1 {{ algo = "sha256,rsa2048"; key-name-hint = "dev";
				sign-images = "kernel"; }};
		}};
	}};
}};
"""


def fit_peer(ctx: Context, work: Path) -> Peer:
    tools = need("mkimage", "dtc", "openssl", package="u-boot-tools, device-tree-compiler")
    keys = work / "keys"
    keys.mkdir()
    setup(["openssl", "genpkey", "-algorithm", "RSA", "-out", "keys/dev.key", "-pkeyopt",
           "rsa_keygen_bits:2048"], work, ctx.env)
    setup(["openssl", "req", "-batch", "-new", "-x509", "-key", "keys/dev.key", "-out",
           "keys/dev.crt", "-subj", "/CN=sfu-bench-fit"], work, ctx.env)
    (work / "ctl.dts").write_text('/dts-v1/;\n/ { model = "ctl"; };\n')
    setup([tools["dtc"], "-I", "dts", "-O", "dtb", "-o", "control.dtb", "ctl.dts"], work,
          ctx.env)
    (work / "fit.its").write_text(FIT_ITS.format(payload=ctx.payload))
    out = work / "image.fit"
    return Peer(
        "U-Boot FIT (mkimage)", deb_version("u-boot-tools"),
        "mkimage compiles the .its with dtc (the image is embedded in the device tree), hashes "
        "the image (SHA-256) and signs the configuration with RSA-2048; the public key goes "
        "into the control DTB for U-Boot to check at boot.",
        package=[Op("mkimage FIT sign (rsa2048)",
                    [tools["mkimage"], "-f", str(work / "fit.its"), "-K",
                     str(work / "control.dtb"), "-k", str(keys), "-r", str(out)],
                    "RSA-2048 over the configuration, which holds the image SHA-256",
                    before=unlinker(out))],
        missing=[("FIT verify", "Debian's u-boot-tools ships no `fit_check_sign`, so a FIT "
                                "signature cannot be checked on the host")])


PEERS: list[tuple[str, Callable[[Context, Path], Peer]]] = [
    ("sfu", sfu_peer), ("RAUC", rauc_peer), ("SWUpdate", swupdate_peer),
    ("mender-artifact", mender_peer), ("MCUboot imgtool", imgtool_peer),
    ("U-Boot FIT (mkimage)", fit_peer),
]


# --- the run -------------------------------------------------------------------------------

def time_rows(ops: list[Op], tool: str, env: Mapping[str, str], runs: int,
              tamper: bool) -> list[Row]:
    rows = []
    for op in ops:
        row = Row(tool, op)
        if op.artifact is not None and not op.artifact.exists():
            row.error = "not run: no artifact (packaging failed)"
        else:
            try:
                row.result = measure(op, env, runs)
                if tamper and op.artifact is not None:
                    row.tamper = tamper_check(op, env)
            except (CommandFailed, OSError) as exc:
                row.error = f"failed: {exc}"
        rows.append(row)
        print(f"  {op.label}: {row.result.wall:.2f} s" if row.result else
              f"  {op.label}: {row.error}", file=sys.stderr)
    return rows


def render(rows: list[Row], reference: float, tamper: bool) -> str:
    headers = ["tool", "operation", "s median (min–max)", "ratio", "CPU s", "peak RSS MiB"]
    headers += ["payload byte flipped: refused?", "checks"] if tamper else ["does"]
    lines = []
    for row in rows:
        if row.result is None:
            cells: list[object] = [row.tool, row.op.label, row.error, "—", "—", "—"]
        else:
            r = row.result
            wall = f"{r.wall:.2f} ({r.fastest:.2f}–{r.slowest:.2f})"
            if r.retried:
                wall += f"; {r.retried} failed run(s) retried"
            cells = [row.tool, row.op.label, wall, f"{r.wall / reference:.2f}",
                     f"{r.cpu:.2f}", f"{r.peak_rss_kib / 1024:.0f}"]
        cells += [row.tamper, row.op.checks] if tamper else [row.op.checks]
        lines.append(cells)
    return table(headers, lines)


def run(size_mib: int = 256, runs: int = 3) -> str:
    with tempfile.TemporaryDirectory(prefix="sfu-bench-peers-") as tmp:
        work = Path(tmp)
        payload = work / "payload.bin"
        make_random_file(payload, size_mib * MIB)
        env = {**os.environ, "LC_ALL": "C"}
        ctx = Context(payload, size_mib * MIB, env)
        reference = Op("openssl dgst -sha256", ["openssl", "dgst", "-sha256", str(payload)],
                       "the hashing limit")
        ref_before = measure(reference, env, max(runs, 3))
        copy = work / "copy.bin"
        floor = Op("cp (read + write the file)", ["cp", str(payload), str(copy)],
                   "the floor for any tool that writes a new file", before=unlinker(copy))
        package_rows = time_rows([floor], "(floor)", env, runs, tamper=False)
        copy.unlink(missing_ok=True)
        verify_rows: list[Row] = []
        versions, notes, missing = [], [], []
        for name, make in PEERS:
            peer_dir = work / name.split()[0].lower()
            peer_dir.mkdir()
            print(f"{name}:", file=sys.stderr)
            try:
                peer = make(ctx, peer_dir)
            except (Unavailable, CommandFailed, OSError) as exc:
                missing.append((name, "all", str(exc)))
                print(f"  not run: {exc}", file=sys.stderr)
                continue
            versions.append(f"{peer.tool} {peer.version}")
            notes.append(f"- **{peer.tool}**: {peer.notes}")
            missing += [(peer.tool, op, reason) for op, reason in peer.missing]
            package_rows += time_rows(peer.package, peer.tool, env, runs, tamper=False)
            verify_rows += time_rows(peer.verify, peer.tool, env, runs, tamper=True)
            shutil.rmtree(peer_dir)  # keep the disk footprint to one peer at a time
        ref_after = measure(reference, env, max(runs, 3))
    ref = (ref_before.wall + ref_after.wall) / 2
    out = [f"### Peers side by side: one {size_mib} MiB random file, same run\n",
           f"Reference: `openssl dgst -sha256` of the same file, {ref:.3f} s "
           f"(median {ref_before.wall:.3f} s before the tools, {ref_after.wall:.3f} s after; "
           f"{max(runs, 3)} runs each). ratio = tool's median wall time / reference. "
           f"Each operation: median of {runs} runs (at least 7 for swupdate); CPU s = user + "
           "sys of the whole process tree (above wall time = it used both cores); "
           "peak RSS = the largest process"
           + ("" if HAVE_GNU_TIME else " (no /usr/bin/time: RSS includes this script's own "
              "peak as a floor)") + ".\n",
           "#### Sign / package\n", render(package_rows, ref, tamper=False), "",
           "#### Verify\n", render(verify_rows, ref, tamper=True), "",
           "The tamper column: one byte flipped in the middle of the artifact (inside the "
           "payload), then the verify run once; **no** means it accepted the altered file.\n"]
    if missing:
        out += ["#### Not run\n",
                table(["tool", "operation", "reason"], [list(m) for m in missing]), ""]
    out += ["#### What each tool does\n", *notes, "",
            "Versions: " + "; ".join(versions) + ".\n"]
    return "\n".join(out)


def main() -> None:
    bench_main(run, __doc__, 256)


if __name__ == "__main__":
    main()
