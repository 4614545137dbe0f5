"""sfupdate: secure firmware update built on IETF SUIT envelopes.

The packages are grouped by who trusts them (docs/architecture.md is the full map):

    secure/     the secure world, trusted: kernel (secure state), agent, boot, board
    richos/     the Rich OS side, untrusted: client
    formats/    pure formats both sides share: sfui (SUIT), remote (commands, EAT), ipc
    authoring/  the authors' and operators' tools: author (sign, agent bundle), repo (TUF),
                operator (remote commands, integrity policies)
    keys/       key handling for authors and the CLI (files, passphrases, PKCS#11)
    cli/        the `sfu` command, a thin front end

Import contracts (.importlinter) keep every arrow pointing the right way: nothing on the
secure side imports the Rich OS side, the authors' tools, key files or the CLI.
"""

__version__ = "0.1.0"
