"""The authors' and operators' tools, run where the signing keys are (docs/architecture.md).

`author` signs firmware into SFUIs and builds agent bundles; `repo` keeps the signed TUF
repository. The secure world never imports them.
"""
