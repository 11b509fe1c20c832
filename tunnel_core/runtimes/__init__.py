"""Detached, supervised local runtimes keyed by alias (``tunnel-client runtimes ...``).

A runtime is ``tunnel-client run --profile-dir D --profile P`` started in its own session
(no tmux, no nohup), its output appended to ``<state>/logs/<alias>.log``, its operator URL
in ``<state>/health/<alias>.url``. Liveness is the recorded pid *and* its start time (psutil),
so a reused pid is never mistaken for ours; health is ``/healthz`` and ``/readyz``.

process     launching detached children, process identity, bounded termination
profile     MCP target validation and the generated runtime profile
probe       health URL files, /healthz + /readyz probes, live operator UI discovery
tmux        observing/stopping tmux-mode records written by the reference
supervisor  the optional ``--restart on-failure`` supervisor (its own small process)
launch      start-or-reuse with a bounded wait for /healthz
remote      management API calls made with key references
models      the JSON payloads of every runtimes command
local       local-first status details and repair suggestions
manager     the operations: create, connect, list, status, stop, remove, cleanup
"""
