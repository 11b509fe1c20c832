from tunnel_core.cli.main import entrypoint

entrypoint()
