"""serve_config.yaml and cluster.yaml, checked with Ray's own validators (no Ray instance needed)."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


# ---- serve_config.yaml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_config() -> dict:
    return load("serve_config.yaml")


def ticketing_app(config: dict) -> dict:
    return next(a for a in config["applications"] if a["name"] == "ticketing")


def test_serve_config_passes_serve_schema(serve_config):
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(serve_config)
    # No timeout that would cut long-lived WebSocket sessions.
    assert schema.http_options.request_timeout_s is None
    assert "request_timeout_s" not in (serve_config.get("http_options") or {})
    # HTTPOptionsSchema accepts unknown keys (forward compatibility): catch typos here instead.
    from ray.serve.schema import HTTPOptionsSchema

    assert set(serve_config["http_options"]) <= set(HTTPOptionsSchema.model_fields)
    assert ticketing_app(serve_config)["route_prefix"] == "/"


def test_serve_schema_rejects_a_broken_config(serve_config):
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    broken = copy.deepcopy(serve_config)
    gateway = next(d for d in ticketing_app(broken)["deployments"] if d["name"] == "Gateway")
    gateway["num_replicas"] = 2  # together with autoscaling_config: not allowed
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(broken)


@pytest.fixture(scope="module")
def built_deployments(database_url, tmp_path_factory) -> dict[str, dict]:
    """Per application: the deployments its `import_path` really builds, by name (builders need a DB)."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    data_dir = str(tmp_path_factory.mktemp("config-check"))
    built = {}
    for app in load("serve_config.yaml")["applications"]:
        args = {**app.get("args", {}), "database_url": database_url, "data_dir": data_dir}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TICKETING_DATA_DIR", data_dir)
            application = call_user_app_builder_with_args_if_necessary(import_attr(app["import_path"]), args)
        built[app["name"]] = {d.name: d for d in build_app(application, name=app["name"]).deployments}
    return built


def test_config_names_exactly_the_deployments_of_the_code(serve_config, built_deployments):
    for app in serve_config["applications"]:
        configured = [d["name"] for d in app.get("deployments", [])]
        assert len(configured) == len(set(configured)), app["name"]
        # Every name must exist (Serve rejects unknown names at deploy time), and every deployment is
        # configured on purpose (replicas, concurrency, CPUs), none left to the code's defaults.
        assert set(configured) == set(built_deployments[app["name"]]), app["name"]
    assert {"Gateway", "OrdersService", "AuthService", "UsersService", "EventsService"} == set(
        built_deployments["ticketing"])


def test_user_config_goes_to_reconfigure_with_known_tunables(serve_config, built_deployments):
    from ticketing.settings import Tunables

    known = {f.name for f in dataclasses.fields(Tunables)}
    with_user_config = {(app["name"], d["name"]): d["user_config"]
                        for app in serve_config["applications"] for d in app.get("deployments", [])
                        if "user_config" in d}
    assert ("ticketing", "Gateway") in with_user_config
    for (app, name), user_config in with_user_config.items():
        assert hasattr(built_deployments[app][name].func_or_class, "reconfigure"), name
        assert set(user_config) <= known | {"rate_limits"}, (name, user_config)
    # All of them may create category actors: the same tunables everywhere, or an actor's hold
    # duration would depend on which deployment touched the category first.
    tunables = [{k: v for k, v in u.items() if k in known} for u in with_user_config.values()]
    assert len({tuple(sorted(t.items())) for t in tunables}) == 1, with_user_config
    # Everything that takes limited requests (HTTP at the Gateway; lock-tickets and join-queue on both
    # socket endpoints) has the same abuse limits, so that tuning them during a sale reaches all of them.
    limited = [("ticketing", "Gateway"), ("realtime", "Realtime"), ("socketio", "RealtimeSocketIO")]
    blocks = [with_user_config[key].get("rate_limits") for key in limited]
    assert blocks[0] and all(block == blocks[0] for block in blocks), with_user_config


def test_gateway_rate_limits_are_the_documented_defaults(serve_config):
    """serve_config.yaml's rate_limits block parses, and says what domain.limits' defaults say (so the file,
    the code and docs/operations.md's table cannot drift apart silently)."""
    from domain.limits import Limits

    gateway = next(d for d in ticketing_app(serve_config)["deployments"] if d["name"] == "Gateway")
    block = gateway["user_config"]["rate_limits"]
    assert Limits.off().merged(block).rates == Limits().rates
    assert Limits().describe() == block
    docs = (ROOT / "docs" / "operations.md").read_text()
    for action, scopes in block.items():
        for scope, rate in scopes.items():
            assert f"| `{action}` | {scope} | {rate} |" in docs, (action, scope, rate)


def test_the_cpu_reserved_at_the_minimum_replica_counts_is_the_documented_figure(serve_config):
    """docs/operations.md and serve_config.yaml's header say what the application reserves at its minimum
    replica counts (the figure an operator sizes the smallest node by); it drifted once (0.7 for 0.95)."""
    import re

    reserved = 0.0
    for app in serve_config["applications"]:
        for d in app.get("deployments", []):
            replicas = d.get("autoscaling_config", {}).get("min_replicas", d.get("num_replicas", 1))
            reserved += replicas * d.get("ray_actor_options", {}).get("num_cpus", 0)
    for name in ("docs/operations.md", "serve_config.yaml"):
        stated = re.search(r"reserves ([0-9.]+) CPU", " ".join((ROOT / name).read_text().split()))
        assert stated and float(stated.group(1)) == pytest.approx(reserved), (name, reserved)


def test_deployments_ask_for_little_cpu_and_scale_where_stateless(serve_config):
    deployments = {d["name"]: d for d in ticketing_app(serve_config)["deployments"]}
    for name, d in deployments.items():
        assert 0 <= d.get("ray_actor_options", {}).get("num_cpus", 0) <= 1, name
        assert d.get("max_ongoing_requests", 0) >= 32, name
    for stateless in ("Gateway", "OrdersService"):
        scaling = deployments[stateless]["autoscaling_config"]
        assert scaling["max_replicas"] > scaling["min_replicas"] >= 1


def test_local_overrides_keep_the_schema_valid():
    from ray.serve.schema import ServeDeploySchema

    from ticketing.local import local_config

    config = local_config(port=18123, host="127.0.0.1", args={"data_dir": "/tmp/x"},
                          tunables={"hold_seconds": 7})
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.port == 18123
    app = ticketing_app(config)
    assert app["args"]["data_dir"] == "/tmp/x"
    hold = {d["name"]: d["user_config"]["hold_seconds"] for a in config["applications"]
            for d in a.get("deployments", []) if "user_config" in d}
    assert set(hold.values()) == {7} and "Gateway" in hold
    # The file itself is untouched.
    assert ticketing_app(load("serve_config.yaml"))["deployments"][0]["user_config"]["hold_seconds"] == 300


# ---- cluster.yaml --------------------------------------------------------------------------------


def prepared(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    ready = prepare_config(copy.deepcopy(config))  # what `ray up` does before validating
    validate_config(ready)
    return ready


def test_cluster_yaml_passes_ray_validation():
    config = load("cluster.yaml")
    assert config["provider"]["type"] == "local"
    ready = prepared(config)
    node_type = ready["available_node_types"][ready["head_node_type"]]
    assert node_type["min_workers"] == len(config["provider"]["worker_ips"])
    # The project is installed on every node, and the head starts Ray with the dashboard reachable.
    assert any("pip install" in c and "/opt/ticketing" in c for c in ready["setup_commands"])
    assert "/opt/ticketing" in ready["file_mounts"]
    head = " ".join(ready["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=0.0.0.0" in head and "--include-dashboard=false" not in head
    worker = " ".join(ready["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker
    # Replicas on every node need the shared database and JWT secret from the environment.
    assert all("ticketing.env" in " ".join(cmds) for cmds in (ready["head_start_ray_commands"],
                                                              ready["worker_start_ray_commands"]))
    # Every node starts with the node settings `ticketing serve` uses, before ticketing.env (which wins).
    from ticketing.local import RAY_NODE_ENVIRONMENT

    for commands in (head, worker):
        for name, value in RAY_NODE_ENVIRONMENT.items():
            assert f"{name}={value} && . ~/ticketing.env" in commands


def test_ray_validation_rejects_a_broken_cluster_yaml():
    import jsonschema

    broken = load("cluster.yaml")
    broken["setup_comands"] = ["typo"]  # unknown top-level key
    with pytest.raises(jsonschema.ValidationError):
        prepared(broken)


def test_the_data_dir_argument_wins_over_the_environment_for_its_application(tmp_path, monkeypatch, database_url):
    """docs/configuration.md: `data_dir` is "as TICKETING_DATA_DIR, for this application": the JWT secret
    its replicas read from that folder is made there, not in the environment's folder."""
    from deployments.app import resolve_and_migrate

    monkeypatch.setenv("TICKETING_DATA_DIR", str(tmp_path / "from-env"))
    monkeypatch.delenv("JWT_SECRET", raising=False)
    db_url, folder = resolve_and_migrate({"data_dir": str(tmp_path / "from-arg"), "database_url": database_url,
                                          "migrate": "0"})
    assert db_url == database_url and folder == str((tmp_path / "from-arg").resolve())
    assert (tmp_path / "from-arg" / "jwt_secret").exists()
    assert not (tmp_path / "from-env").exists()
