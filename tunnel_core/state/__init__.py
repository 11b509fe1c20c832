"""Local state of the runtime manager: where it lives and the files in it.

root            state root resolution and the fixed layout under it
jsonfile        JSON state files (valid YAML too), written atomically and 0600
lock            the state-wide file lock that serialises mutating commands
refs            alias normalisation, secret-reference rules, inline-secret detection
records         ``aliases.yaml`` and ``processes.yaml`` records
admin_profiles  ``admin_profiles.yaml``: named admin connections holding key *references* only
history         the append-only ``history.md`` audit trail

Nothing here ever stores a secret value: keys are kept as ``env:NAME`` / ``file:/path``.
"""
