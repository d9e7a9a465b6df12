"""The deploy kit through the real tools it is written for: Debian 12's nginx (`nginx -t`, and
a live nginx in front of a gateway), `systemd-analyze verify` on the unit, and
`kubernetes-validate --strict` on the manifests. The files are used as shipped; a test
substitutes only what a test must (certificate and log paths, ports, upstream addresses).
The tools come from scripts/install-system-deps.sh and the dev extra."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import FIELDS
from gateway.devstack.procs import free_port
from gateway.devstack.runner import TLSServer
from gateway.devstack.stack import DevStack
from tests.conftest import LoopThread

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = "/usr/sbin/nginx"
DEBIAN_NGINX_CONF = Path("/etc/nginx/nginx.conf")
SERVER_NAME = "mail-standby.council.example"
MAX_BODY = next(f.default for f in FIELDS if f.key == "server.max_body_bytes")


# ---------------------------------------------------------------- nginx
def nginx_tree(tmp: Path, site: str, stack: DevStack, ports: dict[str, int] | None = None,
               upstream: str | None = None) -> Path:
    """Debian's own nginx.conf with the shipped site in place of sites-enabled; certificate,
    pid and log paths moved into ``tmp``; optionally ports and upstream servers replaced."""
    assert stack.certs is not None
    text = (DEPLOY / "nginx" / site).read_text()
    text = text.replace("/etc/ssl/gateway/fullchain.pem", str(stack.certs.server_cert))
    text = text.replace("/etc/ssl/gateway/privkey.pem", str(stack.certs.server_key))
    if site == "compose.conf" or upstream:
        # The compose service names resolve only inside compose's network.
        text = re.sub(r"server (gateway-\d|127\.0\.0\.1):8000",
                      f"server {upstream or '127.0.0.1:8000'}", text)
    for old, new in (ports or {}).items():
        # Loopback only, on a free port; the IPv6 twin goes.
        text = re.sub(rf"^\s*listen \[::\]:{old}\b.*$", "", text, flags=re.M)
        text = re.sub(rf"listen {old}\b", f"listen 127.0.0.1:{new}", text)
    (tmp / "site.conf").write_text(text)
    main = DEBIAN_NGINX_CONF.read_text()
    main = main.replace("include /etc/nginx/sites-enabled/*;", f"include {tmp}/site.conf;")
    main = main.replace("pid /run/nginx.pid;", f"pid {tmp}/nginx.pid;")
    main = main.replace("/var/log/nginx/", f"{tmp}/")
    (tmp / "nginx.conf").write_text(main)
    return tmp / "nginx.conf"


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(conf.parent), "-e", "stderr"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("site", ["gateway.conf", "compose.conf"])
def test_nginx_accepts_the_shipped_site(site: str, stack: DevStack, tmp_path: Path) -> None:
    """`nginx -t` with Debian 12's nginx (1.22) and its own nginx.conf: syntax ok, and no
    warning but OCSP stapling's (the dev certificate names no OCSP responder)."""
    r = nginx_test(nginx_tree(tmp_path, site, stack))
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr
    warnings = [line for line in r.stderr.splitlines()
                if "[warn]" in line and '"ssl_stapling" ignored' not in line]
    assert warnings == [], r.stderr


def test_nginx_is_the_distributions_and_refuses_what_it_does_not_know(stack: DevStack,
                                                                     tmp_path: Path) -> None:
    """The check can fail: Debian's 1.22 does not know `http2 on;` (1.25.1+)."""
    version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr
    assert "nginx/1.22" in version, version
    conf = nginx_tree(tmp_path, "gateway.conf", stack)
    site = conf.parent / "site.conf"
    site.write_text(site.read_text().replace("server_tokens off;", "server_tokens off;\n"
                                             "    http2 on;", 1))
    r = nginx_test(conf)
    assert r.returncode != 0 and 'unknown directive "http2"' in r.stderr


def test_nginx_metrics_networks_are_the_gateways_metrics_allow() -> None:
    """nginx's allow-list for /metrics and GATEWAY_METRICS_ALLOW in the example environment
    name the same networks, so the scraper nginx lets through is not refused by the gateway."""
    env = dict(re.findall(r"^(GATEWAY_[A-Z_]+)=(.*)$",
                          (DEPLOY / "gateway.env.example").read_text(), re.M))
    allowed = set(env["GATEWAY_METRICS_ALLOW"].split(","))
    for site in ("gateway.conf", "compose.conf"):
        block = re.search(r"location = /metrics \{(.*?)\}", (DEPLOY / "nginx" / site).read_text(),
                          re.S)
        assert block, site
        assert set(re.findall(r"allow ([0-9a-f.:/]+);", block.group(1))) == allowed, site
        assert "deny all;" in block.group(1)


class LiveNginx:
    def __init__(self, https: str, http_port: int, https_port: int, ca: Path) -> None:
        self.https, self.http_port, self.https_port, self.ca = https, http_port, https_port, ca

    def client(self) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.https, verify=ctx, trust_env=False, timeout=60,
                            headers={"Host": SERVER_NAME}, follow_redirects=False)


@pytest.fixture(scope="module")
def live_nginx(stack: DevStack, loop_thread: LoopThread,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNginx]:
    """The shipped gateway.conf served by Debian's nginx on free loopback ports, in front of
    a gateway on plain HTTP that trusts it as its proxy (as the example environment sets)."""
    tmp = tmp_path_factory.mktemp("nginx")
    gw_port = free_port()
    settings = stack.gateway_settings(
        gw_port, store__sqlite_path=str(tmp / "gw.db"), server__tls_cert="",
        server__tls_key="", server__public_url=f"https://{SERVER_NAME}",
        server__trusted_proxies=["127.0.0.1/32"], failover__initial_mode="active")
    server = TLSServer(create_app(settings), None, port=gw_port)
    loop_thread.run(server.start())
    http_port, https_port = free_port(), free_port()
    conf = nginx_tree(tmp, "gateway.conf", stack, ports={"80": http_port, "443": https_port},
                      upstream=f"127.0.0.1:{gw_port}")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp), "-e", "stderr",
                             "-g", "daemon off;"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", https_port), 0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        assert stack.certs is not None
        yield LiveNginx(f"https://127.0.0.1:{https_port}", http_port, https_port,
                        stack.certs.ca_cert)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.communicate(timeout=10)  # waits, and closes the pipe
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
        loop_thread.run(server.stop())


def test_nginx_port_80_redirects_to_its_own_name_whatever_the_host(live_nginx: LiveNginx) -> None:
    r = httpx.get(f"http://127.0.0.1:{live_nginx.http_port}/mail?f=INBOX", trust_env=False,
                  headers={"Host": "evil.example"})
    assert r.status_code == 301
    assert r.headers["location"] == f"https://{SERVER_NAME}/mail?f=INBOX"
    assert r.headers["server"] == "nginx"  # server_tokens off: no version


def test_nginx_sends_hsts_once_and_no_version(live_nginx: LiveNginx) -> None:
    """On a gateway page and on nginx's own refusal (/metrics from outside the monitoring
    network), Strict-Transport-Security comes exactly once; Server names no version."""
    with live_nginx.client() as c:
        page = c.get("/auth/signin")
        refused = c.get("/metrics")
    assert page.status_code in (200, 303), page.text
    assert refused.status_code == 403 and "nginx" in refused.text  # nginx's deny
    for r in (page, refused):
        assert r.headers.get_list("strict-transport-security") == [
            "max-age=63072000; includeSubDomains"]
        assert r.headers["server"] == "nginx"


def test_nginx_passes_bodies_over_the_gateways_limit_to_the_gateways_own_page(
        live_nginx: LiveNginx) -> None:
    """A message over server.max_body_bytes reaches the gateway, whose plain page says what
    happened (not nginx's bare 413)."""
    body = b"x" * (MAX_BODY + 1024 * 1024)
    with live_nginx.client() as c:
        r = c.post("/mail/send", content=body,
                   headers={"Content-Type": "application/x-www-form-urlencoded",
                            "Origin": f"https://{SERVER_NAME}"})
    assert r.status_code == 413
    assert "<center>nginx</center>" not in r.text
    assert "Too large" in r.text and "larger than the gateway accepts" in r.text


def test_nginx_replaces_a_clients_request_id(live_nginx: LiveNginx) -> None:
    """nginx sends its own $request_id; what a client puts in X-Request-ID never reaches the
    gateway's logs."""
    with live_nginx.client() as c:
        r = c.get("/livez", headers={"X-Request-ID": "forged-by-client-123"})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert rid != "forged-by-client-123" and re.fullmatch(r"[0-9a-f]{32}", rid), rid


# ---------------------------------------------------------------- systemd
def _unit_for_test(tmp: Path, text: str | None = None) -> Path:
    """The shipped unit with only the program path pointed at this checkout's `gateway`
    (systemd-analyze checks that ExecStart= names an executable)."""
    text = text if text is not None else (DEPLOY / "systemd" / "gateway.service").read_text()
    exe = Path(sys.executable).with_name("gateway")
    assert exe.is_file()
    unit = tmp / "gateway.service"
    unit.write_text(text.replace("/opt/gateway/bin/gateway", str(exe)))
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


def test_systemd_analyze_verify_passes_without_a_word(tmp_path: Path) -> None:
    r = _verify(_unit_for_test(tmp_path))
    assert r.returncode == 0, r.stderr
    assert (r.stdout + r.stderr).strip() == ""


def test_systemd_analyze_verify_would_catch_start_limits_in_service(tmp_path: Path) -> None:
    """The check can fail: StartLimitIntervalSec= in [Service] is reported (and ignored by
    systemd, so the unit would restart forever)."""
    text = (DEPLOY / "systemd" / "gateway.service").read_text()
    text = text.replace("RestartSec=2s", "RestartSec=2s\nStartLimitIntervalSec=60")
    r = _verify(_unit_for_test(tmp_path, text))
    assert "Unknown key 'StartLimitIntervalSec' in section [Service]" in r.stderr


def test_unit_start_limits_are_in_unit_and_documentation_is_installed() -> None:
    """StartLimit*= sit in [Unit]; every Documentation= file is put there by the install
    line in the unit's header, from a file this repository has."""
    text = (DEPLOY / "systemd" / "gateway.service").read_text()
    unit_section = text.split("\n[Unit]\n", 1)[1].split("\n[Service]\n", 1)[0]
    assert "StartLimitIntervalSec=60" in unit_section and "StartLimitBurst=" in unit_section
    install = re.search(r"install -D -m 0644 -t (\S+) (.+)", text)
    assert install
    dest, sources = Path(install.group(1)), install.group(2).split()
    repo = DEPLOY.parent
    docs = re.findall(r"^Documentation=(\S+)", text, re.M)
    assert docs
    for uri in docs:
        assert uri.startswith("file://"), uri
        path = Path(uri.removeprefix("file://"))
        assert path.parent == dest, uri
        assert any(Path(s).name == path.name and (repo / s).is_file() for s in sources), uri


# ---------------------------------------------------------------- Kubernetes
def _validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run([str(exe), "--strict", *map(str, paths)], capture_output=True,
                          text=True, timeout=120)


def test_kubernetes_validate_strict_passes_every_manifest() -> None:
    manifests = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    assert manifests
    r = _validate(*manifests)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "passed" in r.stdout + r.stderr


def test_kubernetes_validate_strict_can_fail(tmp_path: Path) -> None:
    """The check can fail: a misspelt field is refused under --strict."""
    text = (DEPLOY / "kubernetes" / "gateway.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true",
                                1))
    r = _validate(bad)
    assert r.returncode != 0
    assert "readOnlyRootFileSystem" in r.stdout + r.stderr


def _docs() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml")
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "gateway.yaml").read_text()))


def _quantity(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(q[:-2]) * factor
    return int(q)


def test_kubernetes_tmp_holds_many_uploads_outside_the_memory_limit() -> None:
    """Uploads over 1 MiB spool to /tmp: the web pods' /tmp is disk-backed (not counted in the
    512 MiB memory limit), holds at least 20 bodies of server.max_body_bytes at once, and fits
    in the ephemeral-storage limit."""
    dep = next(d for d in _docs() if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")["emptyDir"]
    assert "medium" not in tmp
    size = _quantity(tmp["sizeLimit"])
    assert size >= 20 * MAX_BODY
    limits = pod["containers"][0]["resources"]["limits"]
    assert _quantity(limits["ephemeral-storage"]) >= size


def test_kubernetes_migration_job_has_cpu_and_memory_limits() -> None:
    job = next(d for d in _docs() if d["kind"] == "Job")
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("cpu") and limits.get("memory")


def test_kubernetes_ingress_uses_only_real_annotations_and_passes_large_bodies() -> None:
    """No `nginx.ingress.kubernetes.io/hsts` (not an ingress-nginx annotation; HSTS comes
    from the gateway); the body limit is above the gateway's, so its own page answers."""
    ing = next(d for d in _docs() if d["kind"] == "Ingress")
    notes = ing["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/hsts" not in notes
    assert _quantity(notes["nginx.ingress.kubernetes.io/proxy-body-size"].replace("m", "Mi")) \
        > MAX_BODY


def test_kubernetes_network_policy_admits_the_metrics_scraper() -> None:
    """Prometheus in the monitoring namespace reaches port 8000, and the gateway admits the
    pod network to /metrics (metrics.allow)."""
    pol = next(d for d in _docs() if d["kind"] == "NetworkPolicy")
    sources = [(f, r["ports"]) for r in pol["spec"]["ingress"] for f in r["from"]]
    assert any(f.get("namespaceSelector", {}).get("matchLabels", {}).get(
        "kubernetes.io/metadata.name") == "monitoring" and {"port": 8000} in ports
        for f, ports in sources)
    conf = next(d for d in _docs() if d["kind"] == "ConfigMap")["data"]
    assert conf["GATEWAY_METRICS_ALLOW"]


def test_tools_are_installed_where_the_suite_runs() -> None:
    """These checks run the real tools (installed by scripts/install-system-deps.sh test)."""
    assert shutil.which("systemd-analyze") and Path(NGINX).is_file()
    assert Path(sys.executable).with_name("kubernetes-validate").is_file()


def test_nginx_offers_the_same_mozilla_intermediate_set_as_the_gateway(
    live_nginx: LiveNginx,
) -> None:
    """sslyze against the live nginx: TLS 1.2 and 1.3 only, the profile's ECDHE suites for
    this (ECDSA) certificate, curves X25519, P-256, P-384 (Debian's nginx.conf alone would
    also allow TLS 1.0/1.1 were the site not to set its own)."""
    from sslyze import ScanCommand

    from tests.deploy.test_live_tools import MOZILLA_TLS12, MOZILLA_TLS13, _offer, _scan

    result = _scan(live_nginx.https_port, {
        ScanCommand.TLS_1_0_CIPHER_SUITES, ScanCommand.TLS_1_1_CIPHER_SUITES,
        ScanCommand.TLS_1_2_CIPHER_SUITES, ScanCommand.TLS_1_3_CIPHER_SUITES,
        ScanCommand.ELLIPTIC_CURVES})
    sr = result.scan_result
    versions = {v for v, a in (("TLSv1", sr.tls_1_0_cipher_suites),
                               ("TLSv1.1", sr.tls_1_1_cipher_suites),
                               ("TLSv1.2", sr.tls_1_2_cipher_suites),
                               ("TLSv1.3", sr.tls_1_3_cipher_suites))
                if a.result and a.result.is_tls_version_supported}
    _, tls12, tls13, curves = _offer(sr)
    assert versions == {"TLSv1.2", "TLSv1.3"}
    assert tls12 == {n for n in MOZILLA_TLS12 if "ECDSA" in n}, tls12
    assert tls13 == MOZILLA_TLS13
    assert curves == {"X25519", "secp256r1", "secp384r1"}, curves
