"""Make what a secure Flower deployment needs: a CA, the SuperLink's TLS certificate and SuperNode key pairs.

    python deploy/make_certs.py OUT_DIR [--san HOST ...] [--node NAME ...] [--days N]

writes, under OUT_DIR (created; an existing file is never overwritten, the run stops before writing anything):

- ``ca.crt``          the root certificate: every SuperNode gets it (``--root-certificates``), and so does the
                      ``flwr`` CLI (``root-certificates`` in ``$FLWR_HOME/config.toml``); the SuperLink too
                      (``--ssl-ca-certfile``)
- ``ca.key``          the CA's private key (mode 600): keep it off the SuperLink, it only signs new certificates
- ``server.pem``      the SuperLink's certificate, signed by the CA, with the ``--san`` names/addresses (default
                      ``127.0.0.1`` and ``localhost``; add the SuperLink's public DNS name or IP)
- ``server.key``      its private key (mode 600), for ``--ssl-keyfile``
- ``NAME.key`` and ``NAME.pub`` for each ``--node NAME``: a SuperNode's EC P-384 key pair in OpenSSH format (what
                      ``ssh-keygen -t ecdsa -b 384 -N '' -f NAME.key`` writes). ``NAME.key`` (mode 600) stays on the
                      device (``flower-supernode --auth-supernode-private-key``); ``NAME.pub`` goes to whoever runs
                      ``flwr supernode register NAME.pub`` against a SuperLink started with ``--enable-supernode-auth``.

Only the ``cryptography`` package (a Flower dependency) is used. A device can make its own key pair instead (with
this script's ``--node`` alone, or ``ssh-keygen``) and hand over only the ``.pub``: the private key never has to
leave it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SANS = ("127.0.0.1", "localhost")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedsered"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _san(entries: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for entry in entries:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    return x509.SubjectAlternativeName(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def tls_files(sans: Sequence[str], days: int) -> dict[str, bytes]:
    """ca.crt, ca.key, server.pem, server.key (PEM), the server certificate valid for ``sans``."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # a little slack for clocks that disagree
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("fedsered CA")).issuer_name(_name("fedsered CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    server_key = ec.generate_private_key(ec.SECP384R1())
    server = (
        x509.CertificateBuilder().subject_name(_name(sans[0])).issuer_name(ca.subject)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA384())
    )  # fmt: skip
    return {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "ca.key": _pem_key(ca_key),
        "server.pem": server.public_bytes(serialization.Encoding.PEM),
        "server.key": _pem_key(server_key),
    }


def node_key_files(name: str) -> dict[str, bytes]:
    """NAME.key (OpenSSH private key) and NAME.pub (OpenSSH public key) of a new EC P-384 key pair."""
    key = ec.generate_private_key(ec.SECP384R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return {f"{name}.key": private, f"{name}.pub": public + f" {name}\n".encode()}


def make(out: Path, *, sans: Sequence[str] = DEFAULT_SANS, nodes: Sequence[str] = (), tls: bool = True,
         days: int = 365) -> list[Path]:  # fmt: skip
    """Write the files into ``out``; refuse (FileExistsError, nothing written) if any of them exists."""
    files: dict[str, bytes] = tls_files(sans, days) if tls else {}
    for name in nodes:
        if not name or "/" in name or name.startswith(".") or name in ("ca", "server"):
            raise ValueError(f"not a usable node name: {name!r}")
        files |= node_key_files(name)
    existing = [out / f for f in files if (out / f).exists()]
    if existing:
        raise FileExistsError(f"would overwrite {', '.join(map(str, existing))}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, data in files.items():
        path = out / fname
        secret = fname.endswith(".key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write into (created)")
    parser.add_argument("--san", action="append", default=None,
                        help="a DNS name or IP address the SuperLink is reached at (repeat; default: 127.0.0.1 and "
                             "localhost)")  # fmt: skip
    parser.add_argument("--node", action="append", default=[], help="make a SuperNode key pair NAME.key/.pub (repeat)")
    parser.add_argument("--keys-only", action="store_true", help="only the --node key pairs, no CA or certificate")
    parser.add_argument("--days", type=int, default=365, help="certificate validity in days (default 365)")
    args = parser.parse_args(argv)
    try:
        written = make(args.out, sans=args.san or DEFAULT_SANS, nodes=args.node, tls=not args.keys_only,
                       days=args.days)  # fmt: skip
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
