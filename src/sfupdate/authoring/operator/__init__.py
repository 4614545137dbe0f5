"""The operator's tools: compose remote commands and integrity policies from what an operator
gives (a target, an action and its arguments; a JSON description of the regions), ready to be
signed with `sfupdate.formats.remote.sign_command` / `sign_policy`. The `sfu remote` commands
are a thin front end over these functions."""

from sfupdate.authoring.operator.command import compose_command, key_id, target_for
from sfupdate.authoring.operator.policy_spec import policy_from_json

__all__ = ["compose_command", "key_id", "policy_from_json", "target_for"]
