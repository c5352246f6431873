"""The test session's Serve applications, deployed from a config as `serve run serve_config.yaml` does.

Deploying from a config (not `serve.run` of bound deployments) lets a test change a deployment's user_config
in place: Serve compares the applications' code versions (import path and arguments) and, when only a
user_config changed, calls `reconfigure` on the running replicas. `serve.run` makes a new code version on
every call, so the same change restarted every replica of the application (about 20 s here, 2026-12-03).
"""
from __future__ import annotations

import time

# name -> one application of ray.serve.schema.ServeDeploySchema. Every deploy sends all of them: Serve
# deletes the applications deployed from a config that the next config leaves out.
_apps: dict[str, dict] = {}


def deploy(name: str, import_path: str, route_prefix: str, args: dict,
           user_configs: dict[str, dict] | None = None, *, timeout: float = 180) -> None:
    """Deploy (or update) one application; `user_configs` maps a deployment's name to its user_config."""
    _apps[name] = {
        "name": name, "route_prefix": route_prefix, "import_path": import_path, "args": args,
        "deployments": [{"name": d, "user_config": c} for d, c in (user_configs or {}).items()],
    }
    _apply(timeout)


def reconfigure(name: str, user_configs: dict[str, dict], *, timeout: float = 180) -> None:
    """The running application with these user_configs: its replicas reconfigure, none restarts."""
    app = _apps[name]
    deploy(name, app["import_path"], app["route_prefix"], app["args"], user_configs, timeout=timeout)


def restart(name: str, *, timeout: float = 180) -> None:
    """Delete the application and deploy it again: new replicas, as after a restart of the system."""
    from ray import serve

    serve.delete(name)
    _apply(timeout)


def _apply(timeout: float) -> None:
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    # What `serve run CONFIG` does (ray/serve/scripts.py); Serve has no public call for a config dict.
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate({"applications": list(_apps.values())}))
    deadline = time.monotonic() + timeout
    while True:
        apps = serve.status().applications
        states = {n: apps[n].status if n in apps else "MISSING" for n in _apps}
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        assert not failed, failed
        if all(s == "RUNNING" for s in states.values()):
            return
        assert time.monotonic() < deadline, f"applications not running after {timeout} s: {states}"
        time.sleep(0.2)
