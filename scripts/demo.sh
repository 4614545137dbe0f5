#!/usr/bin/env bash
# sfupdate end to end, from nothing, on a scratch directory:
#   keys -> sign -> repository -> `sfu serve` + `sfu agent serve` -> `sfu client update`
#   -> reboot -> health check -> confirm; then the refusals (downgrade, tampered images) and
#   a v3 that fails its health check and is reverted; the agent updated; a board of two
#   components updated as one set.
# Run through `make demo`, which puts the venv's `sfu` on PATH. The script stops at the first
# step that misbehaves (exit 1), including an attack that is NOT refused.
#
# Structure: one function per act, called in sequence by main() at the bottom; the server and
# the agent run in the background from act_start_services until the script exits.
set -euo pipefail

# shellcheck source=scripts/demo_after_attack.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo_after_attack.sh"   # act_after_attack
# shellcheck source=scripts/demo_components.sh
source "$(dirname "${BASH_SOURCE[0]}")/demo_components.sh"     # act_components

work=$(mktemp -d "${TMPDIR:-/tmp}/sfu-demo.XXXXXX")
sock=agent.sock  # relative to $work, where everything runs
server_pid="" agent_pid="" repo_url=""
VENDOR=example.com CLASS=demo-board

cleanup() {
    local pid
    for pid in $agent_pid $server_pid $components_agent_pid; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $agent_pid $server_pid $components_agent_pid; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "demo: interrupted" >&2; exit 130' INT TERM

if [[ -t 1 ]]; then bold=$'\033[1m' green=$'\033[32m' off=$'\033[0m'; else bold="" green="" off=""; fi
act() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
run() { printf '$ %s\n' "$*"; "$@"; }                  # show a command, then run it
ok() { printf '%s  ok%s  %s\n' "$green" "$off" "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: poll until COMMAND succeeds, or fail loudly.
wait_for() {
    local seconds=$1 what=$2 deadline=$((SECONDS + $1))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready after ${seconds} s"
        sleep 0.1
    done
}

# expect_refused WHAT EXIT_CODE COMMAND...: the command must fail with exactly that exit
# code; prints one line with the reason sfu gave.
expect_refused() {
    local what=$1 code=$2 out rc
    shift 2
    if out=$("$@" 2>&1); then
        die "$what was NOT refused"
    else
        rc=$?
    fi
    [[ $rc == "$code" ]] || die "$what: expected exit $code, got $rc: $out"
    local reason
    reason=$(grep '^sfu: error: ' <<<"$out" | tail -n 1)
    ok "$what: refused (exit $rc): ${reason#sfu: error: }"
}

# The device's state in one line, from the agent: running slot:sequence, floor, trial, slots.
device_state() {
    sfu agent status --socket "$sock" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
slots = " ".join("%s=%s:%s" % (n, v["state"], "-" if v["sequence"] is None else v["sequence"])
                 for n, v in sorted(s["slots"].items()))
print("running=%s:%s floor=%s trial=%s %s" % (s["running_slot"], s["running_sequence"],
      s["rollback_floor"], s["trial_slot"] or "-", slots))'
}

expect_state() {
    local got
    got=$(device_state)
    [[ $got == "$1" ]] || die "device state is '$got', expected '$1'"
}

firmware() {  # firmware NAME SIZE_KIB: a random image
    head -c $(($2 * 1024)) /dev/urandom >"$1"
}

sign() {  # sign NAME SEQUENCE VERSION
    sfu sign "$1.bin" --key author.key --sequence "$2" --vendor "$VENDOR" --class "$CLASS" \
        --version-text "$3" -o "$1.sfui"
}

client() {  # client check|update: the device-side client against the repository
    sfu client "$1" --repo "$repo_url" --socket "$sock" --trusted-root repo/metadata/1.root.json \
        --state-dir client-state
}

# --- the acts ----------------------------------------------------------------------------------

act_author() {
    act "1. The author: a signing key, and firmware v1 and v2 signed as SFUIs (SUIT envelopes)"
    run sfu keys generate --alg ES256 -o author.key
    sfu keys public author.key -o author.pub >/dev/null
    firmware v1.bin 1024
    firmware v2.bin 1024
    sign v1 1 1.0.0 >/dev/null
    run sign v2 2 2.0.0
    run sfu inspect v2.sfui
    run sfu verify v2.sfui --key author.pub --vendor "$VENDOR" --class "$CLASS"
}

act_device() {
    act "2. A simulated board, provisioned with the author's and the operator's public keys and v1"
    after_attack_operator_key  # the operator signs remote commands (last act)
    sfu keys generate -o rom.key >/dev/null  # signs agent bundles; its hash goes into OTP
    run sfu board create board --slot-size 4MiB
    # shellcheck disable=SC2046  # word splitting wanted: the helper prints options
    run sfu board provision board --trust author.pub --vendor "$VENDOR" --class "$CLASS" \
        --firmware v1.sfui --agent-key rom.key $(after_attack_provision_args)
}

act_publish() {
    act "3. The update repository: a signed index (TUF metadata) listing v2"
    sfu keys generate --alg ES256 -o repo.key >/dev/null
    run sfu repo init repo --key repo.key --firmware-key author.pub
    run sfu repo add repo v2.sfui
    run sfu repo publish repo
}

act_start_services() {
    act "4. Start the repository server and the device's agent in the background"
    sfu serve repo --port 0 2>serve.log &
    server_pid=$!
    local deadline=$((SECONDS + 20))
    until repo_url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' serve.log 2>/dev/null); do
        kill -0 "$server_pid" 2>/dev/null || die "sfu serve exited: $(cat serve.log)"
        ((SECONDS < deadline)) || die "sfu serve did not start within 20 s"
        sleep 0.1
    done
    local port=${repo_url##*:}
    wait_for 20 "the repository server" bash -c "exec 3<>/dev/tcp/127.0.0.1/${port%/}"
    ok "sfu serve repo: $repo_url (pid $server_pid)"
    sfu agent serve --board board --socket "$sock" 2>agent.log &
    agent_pid=$!
    wait_for 20 "the agent (log: $(cat agent.log 2>/dev/null))" sfu agent status --socket "$sock"
    kill -0 "$agent_pid" || die "the agent exited: $(cat agent.log)"
    ok "sfu agent serve --board board: socket $sock (pid $agent_pid)"
    run sfu agent status --socket "$sock"
}

act_update() {
    act "5. The device's client finds v2, streams it to the agent, which installs it as a trial"
    local rc=0
    run sfu client check --repo "$repo_url" --socket "$sock" \
        --trusted-root repo/metadata/1.root.json --state-dir client-state || rc=$?
    ((rc == 100)) || die "sfu client check: expected exit 100 (update available), got $rc"
    run sfu client update --repo "$repo_url" --socket "$sock" --state-dir client-state
    expect_state "running=A:1 floor=1 trial=B A=confirmed:1 B=trial:2"
    run sfu agent status --socket "$sock"
    expect_refused "confirm before the trial has booted and passed its health check" 12 \
        sfu agent confirm --socket "$sock"

    act "6. Reboot: secure boot verifies the agent and the trial slot, runs it, health check"
    run sfu board boot board
    expect_state "running=B:2 floor=1 trial=B A=confirmed:1 B=trial:2"
    act "7. Healthy: confirm v2; only now the rollback floor rises to 2"
    run sfu agent confirm --socket "$sock"
    expect_state "running=B:2 floor=2 trial=- A=superseded:1 B=confirmed:2"
    ok "v2 confirmed; rollback floor 2"
}

act_refusals() {
    act "8. Attacks, each refused; the device keeps running v2"
    expect_refused "downgrade: v1 (validly signed) from local media" 7 \
        sfu client update --from v1.sfui --socket "$sock"

    firmware v3.bin 1024
    printf 'SFU-HEALTH:FAIL' >>v3.bin  # the sim's health-check failure marker (docs/board.md)
    sign v3 3 3.0.0 >/dev/null
    cp v3.sfui tampered.sfui
    printf '\xff' | dd of=tampered.sfui bs=1 seek=500000 conv=notrunc status=none
    expect_refused "tampered image (one payload byte flipped) handed to the agent" 4 \
        sfu client update --from tampered.sfui --socket "$sock"
    expect_refused "tampered image offered to the repository (add verifies it)" 4 \
        sfu repo add repo tampered.sfui

    sfu repo add repo v3.sfui >/dev/null
    sfu repo publish repo >/dev/null
    local served
    served=$(find repo/targets -name '*.v3.sfui')
    cp "$served" v3.original
    cp tampered.sfui "$served"  # a compromised mirror serves the tampered bytes
    expect_refused "tampered image on the server (the signed index has its digest)" 14 \
        client update
    cp v3.original "$served"
    expect_state "running=B:2 floor=2 trial=- A=invalid:- B=confirmed:2"
}

act_failing_update() {
    act "9. v3 fails its health check: installed, booted on trial, failed, reverted to v2"
    local installed booted
    installed=$(client update 2>/dev/null) || die "installing v3 failed"
    [[ $installed == "installed sequence 3 into slot A"* ]] || die "unexpected: $installed"
    expect_state "running=B:2 floor=2 trial=A A=trial:3 B=confirmed:2"
    booted=$(sfu board boot board) || die "boot failed: $booted"
    grep -q "trial slot A failed its health check; reverted" <<<"$booted" \
        || die "v3 was not reverted: $booted"
    expect_state "running=B:2 floor=2 trial=- A=bad:3 B=confirmed:2"
    ok "v3 installed into slot A as a trial, booted, failed its health check, reverted to v2" \
       "(floor still 2)"
    run sfu agent status --socket "$sock"
}

act_agent_update() {
    act "10. The agent is a component too: a new agent bundle, run once on trial, confirms itself"
    run sfu agent bundle --key rom.key --sequence 2 -o agent2.sfui
    run sfu install agent2.sfui --socket "$sock"
    local booted
    booted=$(sfu board boot board) || die "boot failed: $booted"
    printf '%s\n' "$booted"
    grep -q "agent bundle 2 in partition B confirmed itself" <<<"$booted" \
        || die "the new agent did not confirm itself: $booted"
    ok "the device runs agent bundle 2; the agent's own rollback floor is 2"
    expect_refused "the old agent bundle (sequence 1) offered again" 7 \
        sfu install agent1.sfui --socket "$sock"
}

# The act after an attack (act_after_attack) lives in scripts/demo_after_attack.sh; it needs
# these, and the server ($repo_url) and the agent ($sock) still running.
step() { act "$@"; }
WORK=$work BOARD=$work/board SOCK=$work/$sock AUTHOR_KEY=$work/author.key SFU=sfu

main() {
    cd "$work"
    act_author
    act_device
    act_publish
    act_start_services
    act_update
    act_refusals
    act_failing_update
    act_after_attack
    sfu agent bundle --key rom.key --sequence 1 -o agent1.sfui >/dev/null
    act_agent_update
    act_components
    printf '\n%sdemo complete%s: every attack was refused, and the device was repaired after one\n' \
        "$bold" "$off"
}

main "$@"
