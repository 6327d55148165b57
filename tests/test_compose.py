"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine needed): the file
parses strictly (a duplicate key is an error, as it is for `docker compose`), the services, their
health checks, dependencies, ports, volumes and the one pinned image are as the README says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (merge keys `<<` may still be
    overridden by an explicit key, as YAML and Compose allow)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        assert isinstance(node, yaml.MappingNode)
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise DuplicateKeyError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: no arbitrary objects


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` (the only form the file uses)."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load((ROOT / "docker-compose.yml").read_text())


def test_the_strict_loader_refuses_a_duplicate_key() -> None:
    with pytest.raises(DuplicateKeyError, match="found duplicate key 'ports'"):
        load("services:\n  view:\n    ports: [a]\n    image: x\n    ports: [b]\n")
    merged = load("x: &a {image: i, restart: no}\ns:\n  <<: *a\n  image: j\n")
    assert merged["s"] == {"image": "j", "restart": False}


def test_the_services_and_their_order_of_start(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "worker", "view"}
    healthy = {"condition": "service_healthy"}
    assert services["worker"]["depends_on"] == {"kafka": healthy, "redis": healthy}
    assert services["view"]["depends_on"]["redis"] == healthy
    assert services["view"]["depends_on"]["kafka"] == healthy
    assert services["view"]["depends_on"]["worker"] == {"condition": "service_started"}


@pytest.mark.parametrize("name", ["kafka", "redis", "view"])
def test_every_server_has_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert check["retries"] >= 3
    if name == "view":
        assert "/healthz" in " ".join(check["test"])


def test_worker_and_view_run_one_image_built_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    built = [name for name, service in services.items() if "build" in service]
    assert built == ["worker"]
    assert services["worker"]["image"] == services["view"]["image"]
    assert services["view"]["pull_policy"] == "never"
    for name in ("worker", "view"):
        env = services[name]["environment"]
        assert env["HEALTHSTREAM_KAFKA_BOOTSTRAP"] == "kafka:19092"
        assert env["HEALTHSTREAM_REDIS_URL"] == "redis://redis:6379/0"


@pytest.mark.parametrize(
    ("service", "variable", "default", "inside"),
    [
        ("kafka", "HEALTHSTREAM_KAFKA_PORT", 9092, 9092),
        ("redis", "HEALTHSTREAM_REDIS_PORT", 6379, 6379),
        ("view", "HEALTHSTREAM_VIEW_PORT", 8000, 8000),
    ],
)
def test_ports_are_loopback_and_movable(
    compose: dict[str, Any], service: str, variable: str, default: int, inside: int
) -> None:
    (mapping,) = compose["services"][service]["ports"]
    assert interpolate(mapping, {}) == f"127.0.0.1:{default}:{inside}"
    assert interpolate(mapping, {variable: "41234"}) == f"127.0.0.1:41234:{inside}"


def test_kafka_advertises_the_port_it_is_published_on(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    advertised = interpolate(env["KAFKA_ADVERTISED_LISTENERS"], {"HEALTHSTREAM_KAFKA_PORT": "41234"})
    assert "HOST://127.0.0.1:41234" in advertised.split(",")


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(compose["volumes"]) == {"kafka-data", "redis-data", "worker-state"}
    assert services["kafka"]["volumes"] == ["kafka-data:/var/lib/kafka/data"]
    assert services["kafka"]["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert services["worker"]["volumes"] == ["worker-state:/home/healthstream/state"]
    assert services["worker"]["environment"]["HEALTHSTREAM_DATA_DIR"] == "/home/healthstream/state"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_image_installs_pinned_runtime_dependencies_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock" in dockerfile
    assert re.search(r"pip install -c requirements\.lock \.(\s|$)", dockerfile), "no extras, pinned"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[_name(name)] = version
    wanted = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    unpinned = sorted({_name(r) for r in wanted} - set(pins))
    assert not unpinned, f"not in requirements.lock (run `make lock`): {unpinned}"
