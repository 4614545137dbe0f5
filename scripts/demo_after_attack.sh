#!/usr/bin/env bash
# Demo act "after an attack": the running image is tampered with on disk -> the agent's
# integrity check catches it -> the operator signs a `revert` -> the Rich-OS client carries
# it to the agent -> after a reboot the device runs its good image again -> a fresh
# attestation, verified on the operator's side, shows it.
#
# Sourced by scripts/demo.sh, which calls `act_after_attack` with these set:
#   WORK   scratch directory          BOARD  provisioned sim board directory
#   SOCK   the running agent's socket SFU    command to run sfu (default: sfu)
#   AUTHOR_KEY  firmware signing key the board trusts (default: $WORK/author.key)
# The board must trust the operator key as an `operator` anchor: create it BEFORE
# provisioning with `after_attack_operator_key` and add `--operator "$WORK/operator.pub"` to
# `sfu board provision` (after_attack_provision_args prints exactly that).
#
# Run it directly (`bash scripts/demo_after_attack.sh`) for a standalone run: it creates a
# board and an agent of its own in a scratch directory and removes them afterwards.

after_attack_operator_key() {
    local sfu=${SFU:-sfu}
    if [[ ! -f "$WORK/operator.key" ]]; then
        $sfu keys generate --alg ES256 -o "$WORK/operator.key" >/dev/null
        $sfu keys public "$WORK/operator.key" -o "$WORK/operator.pub" 2>/dev/null
    fi
}

after_attack_provision_args() {
    printf -- '--operator %s\n' "$WORK/operator.pub"
}

_aa_step() {
    if declare -F step >/dev/null; then step "$@"; else printf '\n\033[1m== %s\033[0m\n' "$*"; fi
}

_aa_json() {  # _aa_json EXPRESSION: evaluate a Python expression over the JSON on stdin (j)
    python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"
}

_aa_next_number() {  # the operator's own command counter (never taken from the device)
    local file="$WORK/operator.number" n=0
    [[ -f "$file" ]] && n=$(<"$file")
    echo $((n + 1)) > "$file"
    echo $((n + 1))
}

act_after_attack() {
    local sfu=${SFU:-sfu} author_key=${AUTHOR_KEY:-$WORK/author.key}
    local device_key="$BOARD/device-id.pub.pem" status seq vendor class running number nonce
    local answer
    after_attack_operator_key

    _aa_step "After an attack 1/7: a new update arrives and boots as a trial"
    status=$($sfu agent status --socket "$SOCK" --json)
    seq=$(_aa_json 'max(j["running_sequence"], j["rollback_floor"]) + 1' <<<"$status")
    vendor=$(_aa_json 'j["vendor_id"]' <<<"$status")
    class=$(_aa_json 'j["class_id"]' <<<"$status")
    head -c 200000 /dev/urandom > "$WORK/update.bin"
    $sfu sign "$WORK/update.bin" --key "$author_key" --sequence "$seq" --vendor "$vendor" \
        --class "$class" --version-text "$seq.0" -o "$WORK/update.sfui" >/dev/null
    $sfu install "$WORK/update.sfui" --socket "$SOCK"
    $sfu board boot "$BOARD"
    $sfu agent check --socket "$SOCK"

    _aa_step "After an attack 2/7: an attacker with root on the Rich OS patches the running image on disk"
    running=$($sfu agent status --socket "$SOCK" --json | _aa_json 'j["running_slot"]')
    printf 'EVIL' | dd of="$BOARD/slots/$running.img" bs=1 seek=4096 conv=notrunc status=none
    echo "4 bytes overwritten in slot $running"

    _aa_step "After an attack 3/7: the agent's integrity check catches it (and logs it in secure storage)"
    if $sfu agent check --socket "$SOCK"; then
        echo "UNEXPECTED: the tampered slot passed the integrity check" >&2; return 1
    fi
    echo "caught: exit code 16"
    $sfu agent audit --socket "$SOCK" | tail -n 1

    _aa_step "After an attack 4/7: the operator signs a revert for this one device"
    number=$(_aa_next_number)
    $sfu remote sign --key "$WORK/operator.key" --action revert --device-key "$device_key" \
        --number "$number" --expires-in 600 -o "$WORK/revert.cose"

    _aa_step "After an attack 5/7: the client carries it; the agent checks signature, target, number"
    $sfu client remote "$WORK/revert.cose" --socket "$SOCK" -o "$WORK/revert-answer.eat"
    answer=$($sfu attest verify "$WORK/revert-answer.eat" --device-key "$device_key" \
        --command "$WORK/revert.cose")
    echo "the device's signed answer: ${answer%%$'\n'*}"
    if $sfu client remote "$WORK/revert.cose" --socket "$SOCK" 2>"$WORK/replay.err"; then
        echo "UNEXPECTED: a replayed command was accepted" >&2; return 1
    fi
    echo "replaying the same command: $(<"$WORK/replay.err")"

    _aa_step "After an attack 6/7: reboot: the device runs its good confirmed image again"
    $sfu board boot "$BOARD"

    _aa_step "After an attack 7/7: a fresh attestation, verified by the operator, shows it"
    nonce=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    $sfu agent attest --nonce "$nonce" --socket "$SOCK" -o "$WORK/attestation.eat"
    $sfu attest verify "$WORK/attestation.eat" --device-key "$device_key" --nonce "$nonce"
    $sfu agent check --socket "$SOCK"
}

_aa_standalone() {
    set -euo pipefail
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sfu-after-attack.XXXXXX")
    BOARD="$WORK/board" SOCK="$WORK/agent.sock" SFU=${SFU:-sfu}
    _AA_AGENT_PID=""
    trap '[[ -z "$_AA_AGENT_PID" ]] || { kill "$_AA_AGENT_PID"; wait "$_AA_AGENT_PID"; }
          rm -rf "$WORK"' EXIT
    $SFU keys generate --alg ES256 -o "$WORK/author.key" >/dev/null
    $SFU keys public "$WORK/author.key" -o "$WORK/author.pub" 2>/dev/null
    after_attack_operator_key
    head -c 100000 /dev/urandom > "$WORK/v1.bin"
    $SFU sign "$WORK/v1.bin" --key "$WORK/author.key" --sequence 1 --vendor example.com \
        --class demo-board --version-text 1.0 -o "$WORK/v1.sfui" >/dev/null
    $SFU board create "$BOARD" --slot-size 1MiB >/dev/null
    # shellcheck disable=SC2046  # word splitting wanted: the helper prints options
    $SFU board provision "$BOARD" --trust "$WORK/author.pub" --vendor example.com \
        --class demo-board --firmware "$WORK/v1.sfui" $(after_attack_provision_args) >/dev/null
    $SFU board boot "$BOARD" >/dev/null
    $SFU agent serve --board "$BOARD" --socket "$SOCK" >"$WORK/agent.log" 2>&1 &
    _AA_AGENT_PID=$!
    for _ in $(seq 100); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
    act_after_attack
    printf '\n\033[1mafter-an-attack act complete\033[0m\n'
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    _aa_standalone
fi
