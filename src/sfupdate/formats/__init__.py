"""Pure formats both sides share: bytes in, typed objects or precise errors out.

`sfui` is the SUIT envelope (CBOR, COSE, the manifest); `remote` the signed commands,
integrity policies and attestation tokens; `ipc` the agent's socket protocol. They import
nothing of ours but `sfupdate.errors` and each other.
"""
