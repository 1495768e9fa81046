"""Real redis-server processes on free loopback ports, for tests.

A standalone server (optionally TLS-only, with an ACL user), a master +
replica + sentinel set, and a 3-master + 3-replica Cluster. The tests kill,
pause and restart servers on purpose, so these are small process handles;
``conftest.py`` wraps them in fixtures. Every wait is bounded in time.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from server_process import HOST, READY_TIMEOUT, LoopbackServer, free_port

FAILOVER_TIMEOUT = 30.0
SERVICE = "sessions"
ACL_USER = "app"
ACL_PASSWORD = "s3cret-acl-password"


class RedisNotInstalled(RuntimeError):
    """There is no ``redis-server`` (or ``redis-cli``) executable on PATH."""


def find(executable: str) -> str:
    path = shutil.which(executable)
    if path is None:
        raise RedisNotInstalled(
            f"{executable} is not installed: the Redis tests need real servers "
            "(`make system-packages`, or install your system's redis-server package)"
        )
    return path


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def replica_online(master: RedisServer, count: int = 1) -> bool:
    """Whether ``count`` replicas finished their first sync with ``master``."""
    with master.client() as client:
        info = client.info("replication")
        if [info.get(f"slave{n}", {}).get("state") for n in range(count)] != ["online"] * count:
            return False
        # ...and acknowledge writes: WAIT counts the replicas that have this one.
        client.set("replica-probe", "1")
        return bool(client.execute_command("WAIT", count, 200) >= count)


@dataclass(frozen=True)
class TLSFiles:
    """A CA, and a server and a client certificate it signed (PEM files)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """Generate a throwaway CA and certificates for 127.0.0.1 with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("wsgi_session test CA"))
        .issuer_name(name("wsgi_session test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(
        common: str, usage: x509.ObjectIdentifier
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cert, key

    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    server, server_key = issue(HOST, ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH)
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=write_key(directory / "server.key", server_key),
        client_cert=directory / "client.pem",
        client_key=write_key(directory / "client.key", client_key),
    )


class RedisServer(LoopbackServer):
    """One ``redis-server`` on ``127.0.0.1:port`` with its files in ``directory``.

    ``args`` are extra ``--option value`` words. With ``tls`` the port speaks
    TLS only (clients must show a certificate the CA signed). With
    ``acl=True`` the user ``ACL_USER`` / ``ACL_PASSWORD`` may use ``~*`` and the
    default user is off. ``sentinel_of`` makes this a sentinel watching that
    master as ``SERVICE``. The port is kept across :meth:`kill` and :meth:`start`.
    """

    name = "redis-server"

    def __init__(
        self,
        directory: Path,
        *args: str,
        tls: TLSFiles | None = None,
        acl: bool = False,
        sentinel_of: RedisServer | None = None,
    ) -> None:
        super().__init__()
        self.executable = find("redis-server")
        self.directory = directory
        self.args = list(args)
        self.tls = tls
        self.acl = acl
        self.sentinel_of = sentinel_of
        self.log = directory / "unstarted.log"

    @property
    def url(self) -> str:
        return f"redis://{self.address}"

    def client(self, **options: object) -> redis.Redis:
        """A plain client, to look at what the server really holds."""
        settings: dict[str, object] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        if self.tls is not None:
            settings.update(
                ssl=True,
                ssl_ca_certs=str(self.tls.ca),
                ssl_certfile=str(self.tls.client_cert),
                ssl_keyfile=str(self.tls.client_key),
            )
        if self.acl:
            settings.update(username=ACL_USER, password=ACL_PASSWORD)
        settings.update(options)
        return redis.Redis(HOST, self.port, **settings)  # type: ignore[arg-type]

    def _command(self) -> list[str]:
        if self.sentinel_of is not None:
            config = self.directory / f"sentinel-{self.port}.conf"
            master = self.sentinel_of
            config.write_text(
                f"port {self.port}\nbind {HOST}\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} {HOST} {master.port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 500\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
            )
            return [self.executable, str(config), "--sentinel"]
        command = [self.executable, "--bind", HOST, "--dir", str(self.directory)]
        command += ["--save", "", "--appendonly", "no", "--dbfilename", f"dump-{self.port}.rdb"]
        command += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not in 5 s
        if self.tls is not None:
            command += ["--port", "0", "--tls-port", str(self.port)]
            command += ["--tls-cert-file", str(self.tls.server_cert)]
            command += ["--tls-key-file", str(self.tls.server_key)]
            command += ["--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "yes"]
        else:
            command += ["--port", str(self.port)]
        if self.acl:
            users = self.directory / f"users-{self.port}.acl"
            users.write_text(f"user default off\nuser {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all\n")
            command += ["--aclfile", str(users)]
        return command + [arg.replace("{port}", str(self.port)) for arg in self.args]

    def _launch(self) -> subprocess.Popen[bytes]:
        self.log = self.directory / f"redis-{self.port}.log"
        with self.log.open("ab") as log:
            return subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )

    def _exit_detail(self, process: subprocess.Popen[bytes]) -> str:
        return self.log.read_text(errors="replace")[-2000:]


class SentinelSet:
    """A master, a replica of it and one sentinel watching them (quorum 1)."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisServer(directory).start()
        self.replica = RedisServer(directory, "--replicaof", HOST, str(self.master.port)).start()
        self.sentinel = RedisServer(directory, sentinel_of=self.master).start()
        wait_for(
            lambda: self.sentinel.client().execute_command("SENTINEL", "REPLICAS", SERVICE) != [],
            READY_TIMEOUT,
            "sentinel knows the replica",
        )
        wait_for(self.in_sync, READY_TIMEOUT, "replica in sync with the master")

    @property
    def url(self) -> str:
        return f"redis+sentinel://{self.sentinel.address}/{SERVICE}"

    def in_sync(self) -> bool:
        return replica_online(self.master)

    def master_port(self) -> int:
        _host, port = self.sentinel.client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(port)

    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica, self.sentinel]

    def stop(self) -> None:
        for server in self.servers():
            server.kill()


class Cluster:
    """Three masters with a replica each, built with ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(
                directory,
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes-{port}.conf"),
                *("--cluster-node-timeout", "1000"),
                # The default bus port, port + 10000, is past 65535 for high free ports.
                *("--cluster-port", str(free_port())),
            ).start()
            for _ in range(6)
        ]
        addresses = [node.address for node in self.nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        subprocess.run(
            [find("redis-cli"), *create],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(self.ready, FAILOVER_TIMEOUT, "cluster state ok on every node")
        # A cluster is "ok" before its replicas have synced: a write that waits
        # for a replica (wait_for_replicas) would time out on a slow machine.
        wait_for(self.replicated, FAILOVER_TIMEOUT, "every replica in sync with its master")

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(node.address for node in self.nodes[:2])

    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes if node.running]

    def ready(self) -> bool:
        return all(
            b"cluster_state:ok" in node.client().execute_command("CLUSTER", "INFO")
            for node in self.live()
        )

    def replicated(self) -> bool:
        """Every live replica's link to its master is up (its first sync is done)."""
        return all(
            info.get("master_link_status") == "up"
            for info in (node.client().info("replication") for node in self.live())
            if info["role"] == "slave"
        )

    def masters(self) -> list[RedisServer]:
        return [
            node for node in self.live() if node.client().info("replication")["role"] == "master"
        ]

    def owner(self, key: bytes) -> RedisServer:
        """The live master serving ``key``'s slot."""
        for node in self.masters():
            try:
                if node.client().exists(key):
                    return node
            except redis.ResponseError:  # MOVED: another master's slot
                continue
        raise LookupError(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


RedisFactory = Callable[..., RedisServer]
"""``redis_factory(*args, tls=None, acl=False)``: one more server for this test."""

__all__: Sequence[str] = [
    "ACL_PASSWORD",
    "ACL_USER",
    "HOST",
    "SERVICE",
    "Cluster",
    "RedisFactory",
    "RedisNotInstalled",
    "RedisServer",
    "SentinelSet",
    "TLSFiles",
    "make_tls_files",
    "replica_online",
    "wait_for",
]
