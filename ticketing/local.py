"""Start the whole system from Python: Ray + Serve + serve_config.yaml, on this machine.

Used by the notebooks and by `ticketing serve`. It deploys the production config file (not a
hand-made copy of it), with local overrides: the HTTP host/port, the builder arguments and the
`user_config` tunables (hold duration, per-order maximum).
"""
from __future__ import annotations

import copy
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from storage.embedded import stop_embedded
from ticketing import settings

APP_NAME = "ticketing"
DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"
# Settings of the Ray node, read when Ray starts (here, `ticketing serve`, cluster.yaml's start commands).
# Every Ray process hands its metrics to the node's dashboard agent every `RAY_metrics_report_interval_ms`
# (Ray's default 10 s), and Ray 2.60's agent records each histogram observation of the interval again,
# one call each (about 11 us each; Serve records two per HTTP request). Every 10 s that is a burst of up
# to 1 s of CPU at niceness 0, above the replicas' 15, which landed in whichever rush ran then.
# Measured 2026-12-05 (BENCHMARKS.md): every 2 s, the agent took 0.06-0.11 s in each orders rush
# instead of up to 0.57 s in one of them, and the trials of a run spread less; the idle agent takes
# about 2 % of a core instead of 1 %. The dashboard's figures are 2 s old at most instead of 10.
RAY_NODE_ENVIRONMENT = {"RAY_metrics_report_interval_ms": "2000"}


def use_environment(values: dict[str, str]) -> None:
    """Put `values` in this process's environment, before Ray starts; what is already set wins."""
    for name, value in values.items():
        os.environ.setdefault(name, value)


def use_node_environment() -> None:
    use_environment(RAY_NODE_ENVIRONMENT)


def environment_of(names: tuple[str, ...]) -> dict[str, str | None]:
    """These variables as they are now (None: unset), for `restore_environment`."""
    return {name: os.environ.get(name) for name in names}


def restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def load_config(path: Path | str | None = None) -> dict:
    with open(path or DEFAULT_CONFIG) as f:
        return yaml.safe_load(f)


def local_config(
    path: Path | str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    args: dict | None = None,
    tunables: dict | None = None,
) -> dict:
    """serve_config.yaml with local overrides.

    `args` go to the ticketing application's builder; other applications read the same settings from
    the environment (DATABASE_URL, TICKETING_DATA_DIR), which start_local sets before Ray starts.
    """
    config = copy.deepcopy(load_config(path))
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    for app in config["applications"]:
        if app.get("name") == APP_NAME:
            app["args"] = {**(app.get("args") or {}), **(args or {})}
        # Every deployment that takes these tunables (any application) gets the same values.
        for deployment in app.get("deployments", []):
            user_config = deployment.get("user_config")
            if tunables and isinstance(user_config, dict) and set(tunables) & set(user_config):
                deployment["user_config"] = {**user_config, **tunables}
    return config


@dataclass
class LocalSystem:
    """A running system in this process's Ray instance; `url` is the base URL of the HTTP API."""

    url: str
    port: int
    data_dir: Path
    database_url: str = field(repr=False)  # may carry a password: not in a notebook's saved output
    config_path: Path | None = None
    tunables: dict = field(default_factory=dict)
    embedded: bool = False  # the database is the embedded server in data_dir, started by us
    dashboard_url: str | None = None
    # The variables start_local set, as they were before: stop() puts them back, so a notebook run again
    # in the same kernel starts afresh instead of on the database this run stopped.
    environment_before: dict[str, str | None] = field(default_factory=dict, repr=False)

    def deploy(self, tunables: dict | None = None, *, timeout: float = 300) -> None:
        """(Re)deploy the config; changing only tunables reconfigures running replicas in place.

        Returns once every application is RUNNING again, i.e. the replicas have the new user_config.
        """
        from ray.serve.context import _get_global_client
        from ray.serve.schema import ServeDeploySchema

        self.tunables = {**self.tunables, **(tunables or {})}
        config = local_config(self.config_path, host="127.0.0.1", port=self.port,
                              args={"data_dir": str(self.data_dir)}, tunables=self.tunables)
        # What `serve run CONFIG` does (ray/serve/scripts.py); Serve has no public call for a config dict.
        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
        wait_until_running(self.url, [a["name"] for a in config["applications"]], timeout)

    def stop(self, *, stop_database: bool = True) -> None:
        """Shut down Serve and Ray; also the embedded database unless `stop_database` is False."""
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()
        if stop_database and self.embedded:
            stop_embedded(self.data_dir / "pgdata")
        restore_environment(self.environment_before)


def wait_until_running(url: str, app_names: list[str], timeout: float) -> None:
    """Until every application is RUNNING and /api/health answers 200 (schema migrated, DB reachable)."""
    import httpx
    from ray import serve

    deadline = time.monotonic() + timeout
    while True:
        apps = serve.status().applications
        states = {name: apps[name].status if name in apps else "MISSING" for name in app_names}
        failed = {n: apps[n].message for n, s in states.items() if s == "DEPLOY_FAILED"}
        if failed:
            raise RuntimeError(f"deploy failed: {failed}")
        if all(s == "RUNNING" for s in states.values()):
            try:
                if httpx.get(f"{url}/api/health", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"applications not running after {timeout:.0f} s: {states}")
        time.sleep(1)


def start_local(
    *,
    data_dir: Path | str | None = None,
    port: int | None = None,
    database_url: str | None = None,
    tunables: dict | None = None,
    num_cpus: int | None = None,
    dashboard: bool = True,
    config_path: Path | str | None = None,
    timeout: float = 300,
    rate_limits: str | dict | None = "off",
) -> LocalSystem:
    """Start a fresh Ray instance in this process, Serve on `port`, and deploy serve_config.yaml.

    The database is `database_url`, else DATABASE_URL, else the embedded server in `data_dir`. The URL
    and the data folder are put in the environment before Ray starts, so every Ray worker (replicas,
    category actors, other applications in the file) inherits them.

    `rate_limits` replaces the abuse limits (user_config `rate_limits`) of the Gateway and of the socket
    deployments: off by default here, because a rush simulated from this machine is thousands of buyers
    at one address; None keeps the file's.
    """
    import ray
    from ray import serve

    from storage.database import resolve_database_url

    data_dir = Path(data_dir or settings.data_dir()).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    before = environment_of(("TICKETING_DATA_DIR", "DATABASE_URL"))
    os.environ["TICKETING_DATA_DIR"] = str(data_dir)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    embedded = not os.environ.get("DATABASE_URL")  # then stop() also stops the server we start
    os.environ["DATABASE_URL"] = resolve_database_url(data_dir)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    use_node_environment()
    port = port or free_port()
    # address="local": always a new instance, never a cluster this machine happens to run already.
    context = ray.init(address="local", namespace=APP_NAME, num_cpus=num_cpus,
                       include_dashboard=dashboard, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    system = LocalSystem(url=f"http://127.0.0.1:{port}", port=port, data_dir=data_dir,
                         database_url=os.environ["DATABASE_URL"],
                         config_path=Path(config_path) if config_path else None, embedded=embedded,
                         dashboard_url=f"http://{context.dashboard_url}" if context.dashboard_url else None,
                         environment_before=before)
    if rate_limits is not None:
        tunables = {**(tunables or {}), "rate_limits": rate_limits}
    try:
        system.deploy(tunables, timeout=timeout)
    except BaseException:
        system.stop()
        raise
    return system


def connect_or_start(url: str | None = None, **start_options) -> tuple[str, LocalSystem | None]:
    """`url` (or TICKETING_URL) if given: use that running system; else start one here."""
    url = url or os.environ.get("TICKETING_URL")
    if url:
        return url.rstrip("/"), None
    system = start_local(**start_options)
    return system.url, system
