"""A real Kubernetes control plane on loopback for tests and benchmarks.

etcd (Debian) + kube-apiserver + kube-controller-manager (built by infra/build.sh into
~/.cache/llmtwin/bin) with RBAC, token authentication and the real third-party CRDs installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tests.harness import free_port, log_tail, spawn, stop_process_group
from tests.harness.pki import certificate, new_key, pem, pem_key
from tests.twins import ROOT

CACHE = Path(os.environ.get("LLMTWIN_CACHE", Path.home() / ".cache" / "llmtwin"))
BIN = CACHE / "bin"
# Third-party CRDs (infra/build.sh crds). Argo CD's and Knative Serving's are schemas only, for validating
# argocd/ and manifests/gateway/knative; they add ~3 s of API server CPU to the start (~21 s before).
CRD_DIRS = ("argo-workflows", "argo-rollouts", "prometheus-operator", "argo-cd", "knative-serving")


class InfraMissing(RuntimeError):
    pass


def pinned_version(name: str) -> str:
    """A version pinned in infra/versions.env (the file infra/build.sh builds from)."""
    for line in (ROOT / "infra" / "versions.env").read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise InfraMissing(f"{name} missing from infra/versions.env")


class KubeCluster:
    def __init__(self, workdir: Path | None = None):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="llmtwin-kube-"))
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.procs: dict[str, subprocess.Popen] = {}
        self.token = "admin-" + os.urandom(8).hex()
        self.server = ""

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> KubeCluster:
        for binary in ("kube-apiserver", "kube-controller-manager", "kubectl"):
            if not (BIN / binary).exists():
                raise InfraMissing(f"{BIN / binary} missing: run infra/build.sh (or `make test`)")
        if not shutil.which("etcd"):
            raise InfraMissing("etcd missing: run infra/build.sh debian (Debian package etcd-server)")
        self._pki()
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--data-dir",
                str(self.workdir / "etcd"),
                "--name",
                "llmtwin-test",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=llmtwin-test=http://127.0.0.1:{etcd_peer}",
                "--quota-backend-bytes=2147483648",
                "--unsafe-no-fsync=true",
            ],
        )
        pki = self.workdir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                str(BIN / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={api_port}",
                "--bind-address=127.0.0.1",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--disable-admission-plugins=ServiceAccount",
            ],
        )
        self._write_kubeconfig(self.kubeconfig, self.token)
        self._wait(lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0, "kube-apiserver")
        self._spawn(
            "kube-controller-manager",
            [
                str(BIN / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # The HPA controller: spec.serving.autoscaling renders an HPA on the Rollout (test_operator.py).
                "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,horizontalpodautoscaling",
                "--horizontal-pod-autoscaler-sync-period=5s",
                "--concurrent-gc-syncs=5",
            ],
        )
        self._install_crds()
        self._wait(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            "default ServiceAccount",
        )
        return self

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            stop_process_group(proc)
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -------------------------------------------------------------------------------- helpers
    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
            cwd=ROOT,  # relative paths as the README writes them (`-k manifests/`)
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def api_client(self, kubeconfig: Path | None = None):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        self.kubectl("create", "namespace", namespace, check=False)
        self.kubectl("create", "serviceaccount", name, "-n", namespace, check=False)
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration=24h").stdout.strip()
        path = self.workdir / f"{namespace}-{name}.kubeconfig"
        self._write_kubeconfig(path, token)
        return path

    def _write_kubeconfig(self, path: Path, token: str) -> None:
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: test, cluster: {{server: '{self.server}', "
            f"certificate-authority: '{self.workdir / 'pki' / 'ca.crt'}'}}}}]\n"
            f"users: [{{name: user, user: {{token: '{token}'}}}}]\n"
            "contexts: [{name: test, context: {cluster: test, user: user, namespace: default}}]\n"
            "current-context: test\n"
        )

    def _pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        ca_key = new_key()
        ca = certificate("llmtwin-test-ca", ca_key, ca=True)
        server_key = new_key()
        server = certificate(
            "kube-apiserver",
            server_key,
            issuer_key=ca_key,
            issuer_name=ca.subject,
            sans=("127.0.0.1", "localhost", "kubernetes.default.svc"),
        )
        sa_key = new_key()
        (pki / "ca.crt").write_bytes(pem(ca))
        (pki / "apiserver.crt").write_bytes(pem(server))
        (pki / "apiserver.key").write_bytes(pem_key(server_key))
        (pki / "sa.key").write_bytes(pem_key(sa_key))
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (pki / "tokens.csv").write_text(f"{self.token},admin,admin,system:masters\n")

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.procs[name] = spawn(argv, self.workdir / f"{name}.log")

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.workdir / f"{name}.log", lines)

    def _wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n{self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}:\n" + "\n".join(self.log_tail(n) for n in self.procs))

    def _install_crds(self) -> None:
        missing = [d for d in CRD_DIRS if not any((CACHE / "crds" / d).glob("*.yaml"))]
        if missing:
            raise InfraMissing(f"no CRDs in {CACHE / 'crds'} for {', '.join(missing)}: run infra/build.sh crds")
        files = [p for d in CRD_DIRS for p in sorted((CACHE / "crds" / d).glob("*.yaml"))]
        files += sorted((ROOT / "manifests" / "crds").glob("*.yaml"))
        args = []
        for f in files:
            args += ["-f", str(f)]
        self.kubectl("apply", "--server-side", "--force-conflicts", *args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


def server_fixture(server):
    """Session fixture body for any harness server: started, or skipped (failed in CI) when its build
    is missing. A server whose start fails is stopped (its processes killed), never orphaned."""
    import pytest

    try:
        server.start()
    except InfraMissing as exc:
        server.stop()
        if os.environ.get("LLMTWIN_REQUIRE_INFRA"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    except BaseException:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
