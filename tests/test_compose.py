"""docker-compose.yml describes the production topology, and everything it names exists in the project.

Docker cannot run here, so the file is read as data: the three-region CockroachDB cluster, the NATS
supercluster (whose config files nats-server itself validates), one control API and one scalable
worker service per region with consistent settings, and every `python -m X` command checked against
the module's own argument parser (`python -m X ... --help`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cells.launcher.nats import nats_server_binary
from control.db.topology import REGIONS
from regions.catalogue import get_region
from regions.objectstore import RegionStore

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
# The CockroachDB localities must match control/db/topology.py's defaults (not an env override).
CRDB_DEFAULT = {"eu": "europe-west1", "in": "asia-south1", "us": "us-east1"}


def _interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default} / ${VAR:?error} with nothing set: defaults, and a placeholder."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(3) if m.group(2) == "-" else f"<{m.group(1)}>", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _interpolate(yaml.safe_load(COMPOSE.read_text()))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return list(command) if isinstance(command, list) else shlex.split(command)


def _flags(argv: list[str]) -> dict[str, str]:
    """`--flag value` and `--flag=value` pairs of a command line (a bare flag maps to "")."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            out[name] = value
        i += 1
    return out


def _python_module(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(module, subcommands, options) of a `python -m module [sub ...] --opt ...` command."""
    if len(argv) < 3 or argv[0] not in ("python", "python3") or argv[1] != "-m":
        return None
    rest = argv[3:]
    subcommands = []
    while rest and not rest[0].startswith("-"):
        subcommands.append(rest.pop(0))
    return argv[2], subcommands, rest


def _python_services(services: dict[str, dict[str, Any]]) -> dict[str, tuple[str, list[str], list[str]]]:
    found = {}
    for name, svc in services.items():
        parsed = _python_module(_argv(svc))
        if parsed is not None:
            found[name] = parsed
    return found


@functools.cache
def _help(module: str, subcommands: tuple[str, ...]) -> str:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-m", module, *subcommands, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"python -m {module} {' '.join(subcommands)} --help failed:\n{proc.stderr}"
    return proc.stdout


def _crdb_nodes(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {
        name: _flags(_argv(svc)[1:])
        for name, svc in services.items()
        if str(svc.get("image", "")).startswith("cockroachdb/cockroach") and _argv(svc)[:1] == ["start"]
    }


def _locality(flags: dict[str, str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in flags["--locality"].split(","))


# --- CockroachDB ------------------------------------------------------------------------------


def test_cockroach_is_three_nodes_one_per_region(services: dict[str, dict[str, Any]]) -> None:
    nodes = _crdb_nodes(services)
    assert len(nodes) == 3
    assert sorted(_locality(f)["region"] for f in nodes.values()) == sorted(CRDB_DEFAULT.values())
    for name, flags in nodes.items():
        assert "--insecure" in flags  # local use; the comment at the top says what production adds
        assert flags["--advertise-addr"] == services[name].get("hostname", name)
        assert set(flags["--join"].split(",")) == set(nodes), name
        locality = _locality(flags)
        assert locality["zone"].startswith(locality["region"] + "-")
        assert any(v.endswith(":/cockroach/cockroach-data") for v in services[name]["volumes"]), name


def test_topology_defaults_are_the_compose_localities(monkeypatch: pytest.MonkeyPatch) -> None:
    from control.db.topology import crdb_regions

    monkeypatch.delenv("AUTOSPEAK_CRDB_REGIONS", raising=False)
    assert dict(crdb_regions()) == CRDB_DEFAULT
    assert {r: get_region(r).db_region for r in REGIONS} == CRDB_DEFAULT


def test_cluster_is_initialised_then_migrated(services: dict[str, dict[str, Any]]) -> None:
    init = services["crdb-init"]
    script_path = init["entrypoint"][-1]
    [mount] = [v for v in init["volumes"] if v.startswith("./deploy/cockroach:")]
    host_script = ROOT / "deploy/cockroach" / Path(script_path).relative_to("/deploy/cockroach")
    script = host_script.read_text()
    assert "cockroach init --insecure" in script and "CREATE DATABASE IF NOT EXISTS" in script
    assert mount.split(":")[1] == "/deploy/cockroach"
    syntax = subprocess.run(["sh", "-n", str(host_script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    assert set(init["depends_on"]) == set(_crdb_nodes(services))
    assert init["environment"]["CRDB_HOST"].split(":")[0] in _crdb_nodes(services)

    migrate = services["migrate"]
    module, subcommands, options = _python_module(_argv(migrate)) or ("", [], [])
    assert (module, subcommands) == ("control.db", ["upgrade"])
    url = urlsplit(_flags(options)["--database-url"])
    assert url.scheme == "cockroachdb" and url.path == "/" + init["environment"]["CRDB_DATABASE"]
    assert url.hostname in _crdb_nodes(services)
    assert migrate["depends_on"] == {"crdb-init": {"condition": "service_completed_successfully"}}


# --- NATS -------------------------------------------------------------------------------------


def _nats_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if str(s.get("image", "")).split(":")[0] == "nats"}


def _nats_conf(service: dict[str, Any]) -> tuple[Path, str]:
    config = _flags(_argv(service))["--config"]
    [mount] = [v for v in service["volumes"] if v.split(":")[1] == config]
    path = ROOT / mount.split(":")[0]
    return path, path.read_text()


def _block(conf: str, name: str) -> str:
    match = re.search(rf"^{name} \{{\n(.*?)^\}}", conf, re.M | re.S)
    assert match, f"no {name} block"
    return match.group(1)


def test_nats_supercluster_of_three_regions_with_gateways(services: dict[str, dict[str, Any]]) -> None:
    nats_services = _nats_services(services)
    assert len(nats_services) == 3
    by_region: dict[str, str] = {}
    gateway_port: dict[str, str] = {}
    peers: dict[str, dict[str, str]] = {}
    for name, svc in nats_services.items():
        path, conf = _nats_conf(svc)
        region = path.stem
        assert path.parent == ROOT / "deploy/nats" and region in REGIONS
        by_region[region] = svc.get("hostname", name)
        assert f'server_tags: ["{get_region(region).nats_tag}"]' in conf
        assert re.search(r"^listen: 0\.0\.0\.0:4222$", conf, re.M)
        assert "store_dir:" in _block(conf, "jetstream")
        assert re.search(rf"^\s+name: {region}$", _block(conf, "cluster"), re.M)
        gateway = _block(conf, "gateway")
        assert re.search(rf"^\s+name: {get_region(region).nats_cluster}$", gateway, re.M)
        assert re.search(r"reject_unknown_cluster: true", gateway)
        gateway_port[region] = re.search(r"listen: 0\.0\.0\.0:(\d+)", gateway).group(1)  # type: ignore[union-attr]
        peers[region] = dict(re.findall(r'\{ name: (\w+), urls: \["nats://([\w.-]+:\d+)"\] \}', gateway))
        assert any(v.endswith(":/data") for v in svc["volumes"])  # the JetStream store persists
    assert set(by_region) == set(REGIONS)
    for region, gateways in peers.items():
        others = set(REGIONS) - {region}
        assert set(gateways) == others, region
        for other in others:
            assert gateways[other] == f"{by_region[other]}:{gateway_port[other]}", (region, other)


def test_nats_configs_are_valid_for_nats_server(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """`nats-server -t` parses and validates the options without starting (gateway host names are not
    resolved, so the compose host names are fine); a broken file is refused, so the check means something."""
    binary = str(nats_server_binary())
    for svc in _nats_services(services).values():
        path, conf = _nats_conf(svc)
        proc = subprocess.run([binary, "-t", "-c", str(path)], capture_output=True, text=True, timeout=30,
                              check=False)
        assert proc.returncode == 0 and "is valid" in proc.stdout + proc.stderr, proc.stderr
        broken = tmp_path / path.name
        broken.write_text(conf.replace("listen: 0.0.0.0:7222", "listen: 0.0.0.0:gateway"))
        proc = subprocess.run([binary, "-t", "-c", str(broken)], capture_output=True, text=True, timeout=30,
                              check=False)
        assert proc.returncode != 0


# --- cells ------------------------------------------------------------------------------------


def _cell_services(services: dict[str, dict[str, Any]], module: str) -> dict[str, dict[str, str]]:
    out = {}
    for name, (mod, _subs, options) in _python_services(services).items():
        if mod == module:
            flags = _flags(options)
            out[flags["--region"]] = {**flags, "service": name}
    return out


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_each_region_has_a_control_api_and_workers_with_consistent_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    controls = _cell_services(services, "control.cell")
    workers = _cell_services(services, "cells.worker")
    assert set(controls) == set(workers) == set(REGIONS)
    nats_host = {_nats_conf(s)[0].stem: s.get("hostname", n) for n, s in _nats_services(services).items()}
    crdb_region_of = {name: _locality(f)["region"] for name, f in _crdb_nodes(services).items()}
    public = {r: controls[r]["--public-url"] for r in REGIONS}
    for region in REGIONS:
        control, worker = controls[region], workers[region]
        csvc, wsvc = services[control["service"]], services[worker["service"]]
        # Both talk to their own region's NATS server and use the same object store layout.
        assert control["--nats-url"] == worker["--nats-url"] == f"nats://{nats_host[region]}:4222"
        assert control["--object-store"] == worker["--object-store"]
        bucket_dir = str(RegionStore(control["--object-store"], region).root)
        volume = _mounts(csvc)[bucket_dir]
        assert _mounts(wsvc)[bucket_dir] == volume == f"objects-{region}"
        # The control API uses the region's own CockroachDB node; every cell knows every cell's URL.
        db = urlsplit(control["--database-url"])
        assert db.scheme == "cockroachdb" and crdb_region_of[db.hostname or ""] == CRDB_DEFAULT[region]
        cells = dict(pair.split("=", 1) for pair in control["--cells"].split(","))
        assert cells == public
        assert csvc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        for name in ("TWILIO_AUTH_TOKEN", "AUTOSPEAK_CALL_TOKEN_SECRET"):
            # Both sides need it: the control plane signs call tokens, the worker checks them.
            assert name in csvc["environment"] and name in wsvc["environment"], name
        assert "replicas" in wsvc.get("deploy", {}), "workers scale with deploy.replicas"
        assert "ports" not in wsvc  # replicas cannot share a host port
        assert control["--host"] == worker["--host"] == "0.0.0.0"
    # No region shares a store volume with another.
    assert len({f"objects-{r}" for r in REGIONS}) == len(REGIONS)


def test_the_audit_sees_every_regions_store(services: dict[str, dict[str, Any]]) -> None:
    module, subs, options = _python_services(services)["audit"]
    flags = _flags(options)
    assert (module, subs) == ("control.audit", ["residency"])
    mounts = _mounts(services["audit"])
    for region in REGIONS:
        assert mounts[str(RegionStore(flags["--object-store"], region).root)] == f"objects-{region}"
    assert dict(p.split("=", 1) for p in flags["--nats-url"].split(",")).keys() == set(REGIONS)


# --- everything named exists ------------------------------------------------------------------


PYTHON_COMMANDS = sorted(
    _python_services(_interpolate(yaml.safe_load(COMPOSE.read_text()))["services"]).items()
)


def test_the_compose_file_runs_every_entry_point() -> None:
    modules = {module for _, (module, _, _) in PYTHON_COMMANDS}
    assert {"control.db", "control.audit", "control.cell", "cells.worker"} <= modules


@pytest.mark.parametrize(("service", "command"), PYTHON_COMMANDS, ids=[name for name, _ in PYTHON_COMMANDS])
def test_python_command_names_a_module_and_flags_it_accepts(
    service: str, command: tuple[str, list[str], list[str]]
) -> None:
    module, subcommands, options = command
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{service}: no module {module}")
    text = _help(module, tuple(subcommands))
    accepted = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    used = set(_flags(options))
    assert used, f"{service}: no options?"
    assert used <= accepted, f"{service}: python -m {module} does not accept {sorted(used - accepted)}"


def test_the_image_is_built_from_a_dockerfile_that_installs_the_project(compose: dict[str, Any]) -> None:
    images = {
        (svc["build"]["context"], svc["build"]["dockerfile"])
        for svc in compose["services"].values() if "build" in svc
    }
    assert len(images) == 1, images
    [(context, dockerfile)] = images
    path = ROOT / context / dockerfile
    assert path.is_file()
    text = path.read_text()
    assert "maturin build" in text and "pip install" in text
    # The wheel carries every top-level package the compose commands import.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = set(pyproject["tool"]["maturin"]["python-packages"])
    for module, _, _ in _python_services(compose["services"]).values():
        assert module.split(".")[0] in packaged, module
    # Every service that runs project code uses that one image.
    for name, (_module, _s, _o) in _python_services(compose["services"]).items():
        assert compose["services"][name].get("image") == "autospeak:local", name


def test_every_bind_mount_source_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"


# --- the media ingress: a stream reaches the replica that offered it -------------------------------


INGRESS_CONF = ROOT / "deploy" / "ingress" / "media.conf"


def _ingress_route() -> re.Pattern[str]:
    """The nginx location that proxies streams, as a Python pattern (nginx's (?<n>..) is (?P<n>..))."""
    [location] = re.findall(r"location ~ (\S+) \{", INGRESS_CONF.read_text())
    return re.compile(location.replace("(?<", "(?P<"))


def test_each_region_routes_a_stream_to_the_worker_named_in_its_url(
    services: dict[str, dict[str, Any]],
) -> None:
    from cells.worker.__main__ import expand_public_url
    from cells.worker.app import WorkerSettings

    workers = _cell_services(services, "cells.worker")
    route = _ingress_route()
    for region in REGIONS:
        worker = workers[region]
        ingress = services[f"media-{region}"]
        assert _mounts(ingress)["/etc/nginx/conf.d/default.conf"] == "./deploy/ingress/media.conf"
        assert worker["service"] in ingress["depends_on"]
        # The ingress sees the region's workers and nothing else (a URL can name any container id).
        assert ingress["networks"] == [f"media-{region}"]
        assert set(services[worker["service"]]["networks"]) == {"default", f"media-{region}"}
        assert not [n for n, svc in services.items() if f"media-{region}" in svc.get("networks", [])
                    and n not in (worker["service"], f"media-{region}")]
        # The public URL's port is the ingress's published port: Twilio reaches the ingress.
        public = urlsplit(worker["--public-url"])
        assert [p.split(":")[0] for p in ingress["ports"]] == [str(public.port)]
        # A replica's stream URL, with its hostname (compose's default: the container's short id).
        settings = WorkerSettings(public_base_url=expand_public_url(worker["--public-url"], "3f2a9c1b7d4e"),
                                  twilio_auth_token="x", data_dir=Path("/nonexistent"))
        match = route.fullmatch(urlsplit(settings.stream_url).path)
        assert match is not None and match["worker"] == "3f2a9c1b7d4e" and match["rest"] == "/media"
    text = INGRESS_CONF.read_text()
    assert "resolver 127.0.0.11" in text and "proxy_set_header Upgrade $http_upgrade" in text


@pytest.mark.parametrize("path", ["/w/../media", "/w/db.internal/media", "/w/crdb-eu:26257/x", "/media",
                                  "/w/3F2A9C1B7D4E/media"])
def test_the_ingress_proxies_to_container_ids_only(path: str) -> None:
    # Names, ports and paths of other services are refused before any lookup (and the ingress's own
    # network holds only workers, see above).
    assert _ingress_route().fullmatch(path) is None


def test_the_worker_hostname_placeholder() -> None:
    from cells.worker.__main__ import expand_public_url

    assert expand_public_url("https://m.example.com/w/{hostname}", "3F2A9c1b7d4e") == \
        "https://m.example.com/w/3f2a9c1b7d4e"
    assert expand_public_url("https://m.example.com", "anything at all") == "https://m.example.com"
    for bad in ("", "a/b", "a.b", "-a", "x" * 64):
        with pytest.raises(ValueError):
            expand_public_url("https://m.example.com/w/{hostname}", bad)
