"""deploy/ matches the code: every GATEWAY_* variable named there is a real setting and every
value given there loads through the real settings loader; the commands the files run exist;
nginx's body limit is above the gateway's; the manifests parse. The real tools (nginx -t,
systemd-analyze, kubernetes-validate) run in test_deploy_tools.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.cli.main import build_parser
from gateway.config import FIELDS, load_settings
from gateway.crypto import new_key

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV_NAMES = {f.env for f in FIELDS}
SECRET_FILES = {f.env + "_FILE" for f in FIELDS if f.secret}
# NAME=value (env files, systemd Environment=), NAME: "value" (YAML), and YAML `- name: NAME`
# followed by `value: ...`.
ASSIGN = re.compile(r"\b(GATEWAY_[A-Z0-9_]+)\s*(?:=|:\s)\s*\"?([^\"\n#]*)\"?")
MENTION = re.compile(r"\bGATEWAY_[A-Z0-9_]+\b")


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def assignments(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            stripped = stripped.lstrip("# ")   # commented-out examples must be right too
        for name, value in ASSIGN.findall(stripped):
            out[name] = value.strip()
    return out


def loadable(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Secret files named in deploy/ exist only on a real host: point them at stand-ins."""
    samples = {"GATEWAY_CRYPTO_KEYS_FILE": new_key(),
               "GATEWAY_STORE_POSTGRES_DSN_FILE": "postgresql://gateway:pw@db:5432/gateway"}
    out = dict(env)
    for name in env:
        if name in SECRET_FILES:
            f = tmp_path / name
            f.write_text(samples.get(name, "sample-secret-value-1234"))
            out[name] = str(f)
    return out


def test_deploy_has_the_promised_files() -> None:
    """systemd, nginx, image, compose, Kubernetes, Entra and the runbook are all there."""
    names = {p.relative_to(DEPLOY).as_posix() for p in deploy_files()}
    assert {"gateway.env.example", "systemd/gateway.service", "nginx/gateway.conf",
            "Containerfile", "compose.yaml", "kubernetes/gateway.yaml",
            "entra/app-registration.md", "entra/manifest.json", "RUNBOOK.md"} <= names


def test_every_variable_named_in_deploy_is_a_setting() -> None:
    """No GATEWAY_* name in deploy/ is misspelt or stale."""
    bad = {(p.name, m) for p in deploy_files() for m in MENTION.findall(p.read_text())
           if m not in ENV_NAMES | SECRET_FILES | {"GATEWAY_CONFIG"}}
    assert not bad, sorted(bad)


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_value_in_deploy_loads(path: Path, tmp_path: Path) -> None:
    """The settings each deploy file gives load through the real loader without error."""
    env = assignments(path)
    if path.name == "gateway.env.example":
        assert len(env) >= 20
    settings = load_settings(environ=loadable(env, tmp_path))
    for name, value in env.items():
        if name in ENV_NAMES and value:
            key = next(f.key for f in FIELDS if f.env == name)
            assert settings.value(key) is not None


def test_example_env_file_is_a_complete_production_setup(tmp_path: Path) -> None:
    """The example environment alone is a valid production configuration on PostgreSQL."""
    env = assignments(DEPLOY / "gateway.env.example")
    s = load_settings(environ=loadable(env, tmp_path))
    assert s.production
    assert s.store.backend == "postgres" and s.store.postgres_dsn
    assert s.server.max_body_bytes == default_of("server.max_body_bytes")


def default_of(key: str) -> object:
    return next(f.default for f in FIELDS if f.key == key)


def test_commands_in_deploy_exist() -> None:
    """Every `gateway <command>` the unit, image, compose file and Job run is a real one."""
    parser = build_parser()
    commands = set()
    for p in deploy_files():
        text = p.read_text()
        commands |= set(re.findall(r"bin/gateway (?:--[a-z-]+ \S+ )*([a-z][a-z-]*)", text))
        commands |= set(re.findall(r'(?:CMD|args:|command:)\s*\["([a-z-]+)"\]', text))
    assert {"serve", "migrate", "check-config"} <= commands
    for c in commands:
        parser.parse_args([c] if c != "certs" else [c, "dev"])


def test_nginx_body_limit_is_above_the_gateways() -> None:
    """nginx and the Ingress accept more than the gateway's largest body, so a member whose
    message is too large gets the gateway's own page (tests/deploy/test_deploy_tools.py
    sends one through a live nginx)."""
    limit = default_of("server.max_body_bytes")
    assert isinstance(limit, int)
    for conf in ("nginx/gateway.conf", "nginx/compose.conf"):
        m = re.search(r"client_max_body_size (\d+)m;", (DEPLOY / conf).read_text())
        assert m and int(m.group(1)) * 1024 * 1024 > limit
    m = re.search(r'proxy-body-size: "(\d+)m"', (DEPLOY / "kubernetes/gateway.yaml").read_text())
    assert m and int(m.group(1)) * 1024 * 1024 > limit


def test_manifests_parse_and_harden() -> None:
    """The Entra manifest is JSON with both app roles; the YAML parses and the pods run
    non-root on a read-only root filesystem with probes on /livez and /readyz."""
    manifest = json.loads((DEPLOY / "entra/manifest.json").read_text())
    assert {r["value"] for r in manifest["appRoles"]} == {"Gateway.Member", "Gateway.Admin"}
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/gateway.yaml").read_text()))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "Job"} <= kinds
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert {"postgres", "migrate", "gateway-1", "gateway-2", "nginx"} <= set(compose["services"])
    assert compose["services"]["gateway-1"]["read_only"] is True
