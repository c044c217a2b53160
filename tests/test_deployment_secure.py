"""The README's secure deployment recipe, on loopback: a SuperLink over TLS with SuperNode authentication, two
registered SuperNodes that complete a run, one SuperNode with a key nobody registered that is refused.

Everything comes from ``deploy/make_certs.py`` as the README runs it: a CA, the SuperLink's certificate (SAN
127.0.0.1/localhost) and an EC P-384 key pair per SuperNode. The SuperLink runs with ``--ssl-*`` and
``--enable-supernode-auth``; ``flwr supernode register KEY.pub`` (over TLS, the CLI's connection holding
``root-certificates``) authorises the two devices' public keys; each SuperNode connects with ``--root-certificates``
and ``--auth-supernode-private-key``. Every process is stopped by PID, also when an assertion fails."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from flower_deploy import (
    BIN,
    ROOT,
    TINY,
    Processes,
    device,
    flower_env,
    flwr_run_argv,
    free_port,
    wait_for,
    wait_healthy,
)
from wavtrees import write_ravdess_tree

from fedsered.config import load_config

POLICY = "privacy:\n  enabled: true\n  target_epsilon: 4\n  budget_epsilon: 4\n  share: [synthetic]\n"


@dataclass
class Secure:
    env: dict[str, str]
    procs: Processes
    certs: Path
    port: int
    node_ids: dict[str, int]  # registered SuperNode name -> the node id the SuperLink gave its key
    intruder: subprocess.Popen[bytes]


def flwr(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "flwr"), *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    certs = tmp_path / "certs"
    made = subprocess.run(
        [str(BIN / "python"), str(ROOT / "deploy" / "make_certs.py"), str(certs),
         "--node", "device0", "--node", "device1", "--node", "intruder"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    home = tmp_path / "flwr_home"
    env = flower_env(home)
    port = free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "secure"\n\n[superlink.secure]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{certs / "ca.crt"}"\n'
    )
    procs = Processes(env, tmp_path)
    try:
        link = procs.start("superlink", [
            BIN / "flower-superlink", "--ssl-ca-certfile", certs / "ca.crt", "--ssl-certfile", certs / "server.pem",
            "--ssl-keyfile", certs / "server.key", "--enable-supernode-auth", "--host", "127.0.0.1", "--port", port,
            "--database", tmp_path / "state.db",
        ])  # fmt: skip
        wait_healthy(f"https://127.0.0.1:{port}", link, tmp_path / "superlink.log", ca=certs / "ca.crt")
        node_ids = {}
        for name in ("device0", "device1"):  # the operator authorises the two devices' public keys
            reg = flwr(env, "supernode", "register", certs / f"{name}.pub", "secure", "--name", name, "--format",
                       "json")  # fmt: skip
            assert reg.returncode == 0, reg.stdout + reg.stderr
            node_ids[name] = int(json.loads(reg.stdout)["node-id"])

        def supernode(name: str, node_config: str) -> subprocess.Popen[bytes]:
            return procs.start(name, [
                BIN / "flower-supernode", "--root-certificates", certs / "ca.crt", "--superlink", f"127.0.0.1:{port}",
                "--auth-supernode-private-key", certs / f"{name}.key", "--host", "127.0.0.1", "--port", free_port(),
                "--node-config", node_config,
            ])  # fmt: skip

        # an unregistered key claiming to be device 1 (a valid key pair, the right CA: only the registration lacks)
        intruder = supernode("intruder", device(tmp_path / "intruder", 1, 2, POLICY))
        for k in range(2):
            supernode(f"device{k}", device(tmp_path / f"device{k}", k, 2, POLICY))
        yield Secure(env, procs, certs, port, node_ids, intruder)
    finally:
        procs.stop()


def test_make_certs_writes_what_flower_loads_and_never_overwrites(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from flwr.cli.supernode.register import try_load_public_key

    spec = importlib.util.spec_from_file_location("make_certs", ROOT / "deploy" / "make_certs.py")
    assert spec and spec.loader
    make_certs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_certs)
    out = tmp_path / "certs"
    assert make_certs.main([str(out), "--san", "10.0.0.7", "--san", "link.example", "--node", "dev"]) == 0
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    assert san.get_values_for_type(x509.DNSName) == ["link.example"]
    server.verify_directly_issued_by(x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()))
    load_ssh_private_key((out / "dev.key").read_bytes(), None)  # what flower-supernode does with its key
    assert try_load_public_key(out / "dev.pub")  # what flwr supernode register does with the public one
    assert {f.name: f.stat().st_mode & 0o777 for f in out.iterdir() if f.suffix == ".key"} == {
        "ca.key": 0o600, "server.key": 0o600, "dev.key": 0o600}  # fmt: skip
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    assert make_certs.main([str(out), "--node", "other"]) == 2  # ca.crt exists: nothing written, not even other.*
    assert make_certs.main([str(out), "--keys-only", "--node", "dev"]) == 2
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert make_certs.main([str(out), "--keys-only", "--node", "dev2"]) == 0
    assert sorted(f.name for f in out.iterdir()) == sorted([*before, "dev2.key", "dev2.pub"])


@pytest.mark.slow
def test_tls_and_supernode_auth(secure: Secure, tmp_path: Path) -> None:
    s = secure
    write_ravdess_tree(tmp_path / "server" / "data", actors=[3], n_per=2, seconds=1.0, seed=3)
    cfg = load_config(ROOT / "configs" / "default.yaml",
                      [*TINY, f"data.path={tmp_path / 'server' / 'data'}", "federation.baselines=[]"])  # fmt: skip
    config_path = tmp_path / "server" / "run.yaml"
    config_path.write_text(cfg.to_yaml())
    # the run starts while the SuperNodes connect (the ServerApp waits for its 2 nodes); the intruder tries meanwhile
    run = s.procs.start("flwr-run", flwr_run_argv(config_path, tmp_path / "out", "secure"), cwd=ROOT)
    # TLS only, with our CA: plain HTTP gets no answer, and the system's trust store does not know the certificate
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{s.port}/health", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://127.0.0.1:{s.port}/health", timeout=5)
    # the unknown key is refused at activation and its SuperNode exits
    assert s.intruder.wait(timeout=60) != 0
    intruder_log = s.procs.log("intruder")
    assert "Failed to activate SuperNode" in intruder_log and "Exit Code: 305" in intruder_log, intruder_log
    assert "No SuperNode found with the given public key" in s.procs.log("superlink")

    assert run.wait(timeout=240) == 0, s.procs.log("flwr-run")[-3000:]
    results = json.loads(wait_for(tmp_path / "out" / "results.json").read_text())
    assert results["nodes"] == {"expected": 2, "connected": 2}
    assert [(c["id"], c["status"]) for c in results["clients"]] == [("client-0", "ok"), ("client-1", "ok")]
    assert all(c["privacy"]["epsilon"] == pytest.approx(4.0, rel=0.02) for c in results["clients"])
    # the work was the registered devices': each one's own ledger paid once, the intruder's folder never got a task
    for k in range(2):
        ledger = json.loads((tmp_path / f"device{k}" / "ledgers" / f"client-{k}" / "synthetic.json").read_text())
        assert len(ledger["releases"]) == 1
        assert f"SuperNode ID: {s.node_ids[f'device{k}']}" in s.procs.log(f"device{k}")
    assert not (tmp_path / "intruder" / "ledgers").exists()
    # the SuperLink knows exactly the two registered nodes, both online; the intruder's key never became a node
    listed = flwr(s.env, "supernode", "list", "secure", "--format", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    nodes = {int(n["node-id"]): n["status"] for n in json.loads(listed.stdout)["nodes"]}
    assert nodes == {i: "online" for i in s.node_ids.values()}

    started = s.procs.tree()  # SuperLink, SuperNodes and their SuperExec / app processes
    assert len(started) >= 3
    s.procs.stop()
    assert not [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
