#!/usr/bin/env bash
# Demo act "several components": a board of two components (a bootloader and an
# application), an SFUI that carries both as one set, installed, booted and confirmed as one;
# then an SFUI naming only the application (the bootloader keeps its image); then a set with
# one byte of its second payload flipped, refused with nothing recorded.
#
# Sourced by scripts/demo.sh, which calls `act_components` from its scratch directory with the
# helpers act/run/ok/die/expect_refused/device_state/firmware and VENDOR, CLASS set, and
# author.key / author.pub made. The act starts its own agent for its own board and records
# its pid in components_agent_pid (demo.sh's cleanup stops it).

components_agent_pid=""

sign_set() {  # sign_set OUT SEQUENCE VERSION NAME=FILE...
    local out=$1 sequence=$2 version=$3 spec
    shift 3
    local args=()
    for spec in "$@"; do args+=(--component "$spec"); done
    sfu sign "${args[@]}" --key author.key --sequence "$sequence" --vendor "$VENDOR" \
        --class "$CLASS" --version-text "$version" -o "$out"
}

component_state() {  # each component of the confirmed set: name=sequence
    sfu board status set-board --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
parts = s["slots"][s["confirmed_slot"]]["components"]
print(" ".join("%s=%s" % (part["name"], part["sequence"]) for part in parts))'
}

act_components() {
    act "11. Several components in one SFUI: a bootloader and an application, installed as one set"
    run sfu board create set-board --component boot:256KiB --component app:1MiB
    firmware boot1.bin 64
    firmware app1.bin 256
    sign_set set1.sfui 1 1.0.0 boot=boot1.bin app=app1.bin >/dev/null
    sfu board provision set-board --trust author.pub --vendor "$VENDOR" --class "$CLASS" \
        --firmware set1.sfui >/dev/null
    sfu agent serve --board set-board --socket set.sock 2>set-agent.log &
    components_agent_pid=$!
    wait_for 20 "the set board's agent" sfu agent status --socket set.sock

    firmware boot2.bin 64
    firmware app2.bin 256
    run sign_set set2.sfui 2 2.0.0 boot=boot2.bin app=app2.bin
    run sfu inspect set2.sfui
    run sfu install set2.sfui --socket set.sock
    run sfu board boot set-board
    run sfu agent confirm --socket set.sock
    [[ $(component_state) == "boot=2 app=2" ]] || die "set 2 is not confirmed: $(component_state)"
    ok "both components of set 2 installed, booted and confirmed as one; rollback floor 2"

    firmware app3.bin 256
    sign_set app3.sfui 3 3.0.0 app=app3.bin >/dev/null
    run sfu install app3.sfui --socket set.sock
    sfu board boot set-board >/dev/null
    sfu agent confirm --socket set.sock >/dev/null
    [[ $(component_state) == "boot=2 app=3" ]] || die "app 3 is not confirmed: $(component_state)"
    ok "an SFUI naming only the application: set 3 keeps bootloader 2 (copied, checked)"

    firmware boot4.bin 64
    firmware app4.bin 256
    sign_set set4.sfui 4 4.0.0 boot=boot4.bin app=app4.bin >/dev/null
    cp set4.sfui set4-tampered.sfui
    local size
    size=$(stat -c %s set4.sfui)
    printf '\xff' | dd of=set4-tampered.sfui bs=1 seek=$((size - 1000)) conv=notrunc status=none
    expect_refused "a set with one byte of its second payload flipped" 4 \
        sfu install set4-tampered.sfui --socket set.sock
    local after
    after=$(sock=set.sock device_state)
    [[ $after == "running=A:3 floor=3 trial=- A=confirmed:3 B=invalid:-" ]] \
        || die "the refused set left the device in state $after"
    ok "nothing of the tampered set was recorded: slot B left invalid, set 3 runs ($after)"
    kill "$components_agent_pid" && wait "$components_agent_pid" 2>/dev/null || true
    components_agent_pid=""
}
