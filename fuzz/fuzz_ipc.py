"""Coverage-guided fuzzing (atheris) of the IPC frame decoder and message schema: the bytes a
hostile Rich-OS client can put on the agent's socket.

    python fuzz/fuzz_ipc.py fuzz/work/ipc fuzz/corpus/ipc -max_total_time=60

The input is written into one end of a real socket pair; the agent's reading code reads
requests from the other end until it stops. Selector byte 1 also runs the client's reply
decoder (what a hostile agent impersonator could send back). Any exception other than
sfupdate.errors.SfuError is a finding.
"""

from __future__ import annotations

import socket

import atheris

with atheris.instrument_imports():
    from sfupdate.formats.ipc.framing import Connection, decode_map
    from sfupdate.formats.ipc.messages import decode_reply, read_request

from harness import fuzz, selecting  # fuzz/harness.py: what every harness shares

MAX_REQUESTS = 64


def read_requests(data: bytes) -> None:
    ours, theirs = socket.socketpair()
    try:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        conn = Connection(ours, timeout=0.5)
        for _ in range(MAX_REQUESTS):
            read_request(conn)
    finally:
        ours.close()
        theirs.close()


def read_reply(data: bytes) -> None:
    decode_reply(decode_map(data))


test_one_input = selecting([read_requests, read_reply])  # an odd first byte: the reply

if __name__ == "__main__":
    fuzz(test_one_input)
