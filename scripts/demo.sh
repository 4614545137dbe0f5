#!/usr/bin/env bash
# The main job end to end, on a scratch directory: keys -> sign -> inspect -> verify ->
# a tampered copy refused. Run through `make demo`, which puts the venv's `sfu` on PATH.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/sfu-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. The author makes a signing key and exports its public half"
sfu keys generate --alg ES256 -o author.key
sfu keys public author.key -o author.pub

step "2. Sign a 4 MiB firmware image into an SFUI (a SUIT envelope)"
head -c 4194304 /dev/urandom > firmware-v2.bin
sfu sign firmware-v2.bin --key author.key --sequence 2 --vendor example.com \
    --class demo-board --version-text 2.0.0 -o firmware-v2.sfui

step "3. Inspect it (no key needed; the signature is not checked)"
sfu inspect firmware-v2.sfui

step "4. Verify it with the author's public key, vendor and class"
sfu verify firmware-v2.sfui --key author.pub --vendor example.com --class demo-board

step "5. Flip one payload byte: the copy is refused"
cp firmware-v2.sfui tampered.sfui
printf '\xff' | dd of=tampered.sfui bs=1 seek=1000000 conv=notrunc status=none
if sfu verify tampered.sfui --key author.pub; then
    echo "UNEXPECTED: tampered image accepted" >&2; exit 1
else
    echo "refused, exit code $?"
fi

step "6. Another author's key: refused"
sfu keys generate --alg EdDSA -o mallory.key
if sfu verify firmware-v2.sfui --key mallory.key; then
    echo "UNEXPECTED: accepted with the wrong key" >&2; exit 1
else
    echo "refused, exit code $?"
fi
printf '\n\033[1mdemo complete\033[0m\n'
