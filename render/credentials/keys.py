"""The artist's signing key and certificate chain, kept in their config folder.

``entropic credentials init`` makes them, or takes the ones an artist brings::

    <config>/credentials/
        signer-chain.pem    the signing certificate, then the certificates that issued it
        signer-key.pem      its private key (mode 0600)
        credentials.json    {"format": "entropic-credentials", "made_here": true, "subject": ...,
                             "training_mining": "notAllowed", "algorithm": "es256", ...}

``<config>`` is ``$ENTROPIC_CONFIG_DIR``, else the user's config folder (platformdirs:
``~/.config/entropic`` on Linux, ``~/Library/Application Support/entropic`` on macOS,
``%LOCALAPPDATA%\\entropic`` on Windows).

A key made here is an ECDSA P-256 key whose certificate is issued by a root certificate made
at the same moment (C2PA refuses a self-signed *signing* certificate, so the self-signed one
is the root); the root's key is thrown away once it has signed. No trust list knows that
root: a reader sees a valid signature by an unknown signer, and ``entropic verify
--trust-anchor`` accepts it when the artist publishes the root (``root.pem``).

Loading checks what would otherwise surface as an opaque signing failure: the files are
there and parse, the key is the certificate's, and the certificate is valid today.
"""

from __future__ import annotations

import datetime as dt
import io
import getpass
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.common.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from diffusion.common.json_files import read_json
from diffusion.common.errors import EntropicError
from diffusion.common.user_dirs import user_dir

CONFIG_ENV = "ENTROPIC_CONFIG_DIR"
FOLDER = "credentials"
CHAIN_FILE = "signer-chain.pem"
KEY_FILE = "signer-key.pem"
ROOT_FILE = "root.pem"
INFO_FILE = "credentials.json"
FORMAT = "entropic-credentials"
VERSION = 1
DEFAULT_DAYS = 730
MAX_DAYS = 36_500
# The C2PA training-and-data-mining choices (C2PA 1.x "c2pa.training-mining" assertion).
TRAINING_MINING = ("notAllowed", "allowed", "constrained")
DEFAULT_TRAINING_MINING = "notAllowed"


def config_dir() -> Path:
    """$ENTROPIC_CONFIG_DIR, else the user's config folder for entropic (it may not exist yet)."""
    return user_dir("config", CONFIG_ENV)


def credentials_dir() -> Path:
    """Where the signing credentials live."""
    return config_dir() / FOLDER


@dataclass(frozen=True)
class Credentials:
    """A loaded, checked signing identity: what c2pa's signer needs, and what to say about it."""

    chain_pem: bytes
    key_pem: bytes
    algorithm: str  # c2pa's name: es256 | es384 | es512 | ps256 | ed25519
    subject: str
    issuer: str
    not_after: dt.datetime
    made_here: bool
    training_mining: str
    folder: Path

    def describe(self) -> str:
        """One line: who signs, until when, and whether anyone else trusts it."""
        trust = ("made here (self-signed root, on no trust list)" if self.made_here
                 else f"issued by {self.issuer}")
        return (f"signer {self.subject!r}, {self.algorithm}, {trust}, valid until "
                f"{self.not_after:%Y-%m-%d}; training and mining: {self.training_mining}")


def _x509():
    from cryptography import x509

    return x509


def _name(common: str, organisation: str):
    x509 = _x509()
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)])


def _algorithm(key: Any, where: Path) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
        raise EntropicError(f"{where}: EC curve {key.curve.name} cannot sign C2PA credentials (use P-256, P-384 or P-521)")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise EntropicError(f"{where}: a {type(key).__name__} cannot sign C2PA credentials (use EC P-256, Ed25519 or RSA)")


def _common_name(name: Any) -> str:
    from cryptography.x509.oid import NameOID

    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else name.rfc4514_string()


def _load_chain(data: bytes, where: Path) -> list[Any]:
    x509 = _x509()
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        chain = []
    if not chain:
        raise EntropicError(f"{where}: no PEM certificate in it (expected the signing certificate, then its issuers)")
    return chain


def _load_key(data: bytes, where: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise EntropicError(f"{where}: the private key is encrypted; give an unencrypted PEM key") from None
    except ValueError:
        raise EntropicError(f"{where}: not a PEM private key") from None


def _public_bytes(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_pair(chain_pem: bytes, key_pem: bytes, chain_path: Path, key_path: Path,
               now: dt.datetime | None = None) -> tuple[Any, str]:
    """Parse and check a chain and key; return (signing certificate, c2pa algorithm name).

    Refused, in one line naming the file: unparsable PEM, a key that is not the certificate's,
    a certificate not valid at ``now`` (expired or not yet valid), an unsupported key type.
    """
    chain = _load_chain(chain_pem, chain_path)
    key = _load_key(key_pem, key_path)
    leaf = chain[0]
    if _public_bytes(key.public_key()) != _public_bytes(leaf.public_key()):
        raise EntropicError(f"{key_path}: this key does not belong to the signing certificate in {chain_path} "
                            f"({_common_name(leaf.subject)!r})")
    now = now or dt.datetime.now(dt.timezone.utc)
    if leaf.not_valid_after_utc < now:
        raise EntropicError(f"{chain_path}: the signing certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}; "
                            "make a new one with `entropic credentials init --overwrite`")
    if leaf.not_valid_before_utc > now:
        raise EntropicError(f"{chain_path}: the signing certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    return leaf, _algorithm(key, key_path)


def make_identity(name: str, days: int = DEFAULT_DAYS) -> tuple[bytes, bytes, bytes]:
    """A new signing key, its certificate and the self-signed root that issued it (PEM bytes).

    Returns (chain: signing certificate + root, private key, root certificate).
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    x509 = _x509()
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    organisation = "entropic (made on the artist's computer)"
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{name} (local root)", organisation)
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, encipher_only=False, decipher_only=False)
    root = (
        x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
        .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days + 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(_name(name, organisation)).issuer_name(root_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True)
        # C2PA's certificate profile asks for one of a few extended key usages; this is the usual one.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    root_pem = root.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + root_pem, key_pem, root_pem


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise EntropicError(f"--name {name!r}: give 1 to 64 printable characters (it is the certificate's name)")
    return name


def default_name() -> str:
    """The name a certificate made here carries when none is given: the login name."""
    try:
        return f"{getpass.getuser()} (entropic artist)"
    except (OSError, KeyError):
        return "entropic artist"


def init_credentials(
    *,
    name: str | None = None,
    cert: str | os.PathLike | None = None,
    key: str | os.PathLike | None = None,
    training_mining: str = DEFAULT_TRAINING_MINING,
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> Credentials:
    """Make (or take) the signing credentials and store them in :func:`credentials_dir`.

    With ``cert`` and ``key`` (PEM files) the artist's own identity is copied in, after the
    checks of :func:`check_pair` and a trial signature. Without them a key and certificate
    are made here. Existing credentials are kept unless ``overwrite``; replaced ones are moved
    to ``credentials-replaced-<time>/`` beside them, never deleted (a key that signed published work
    should not vanish).
    """
    if training_mining not in TRAINING_MINING:
        raise EntropicError(f"--training-mining {training_mining!r}: choose one of {', '.join(TRAINING_MINING)}")
    if (cert is None) != (key is None):
        raise EntropicError("--cert and --key go together: the certificate chain and its private key")
    if not 1 <= int(days) <= MAX_DAYS:
        raise EntropicError(f"--days {days}: give 1 to {MAX_DAYS}")
    folder = credentials_dir()
    if (folder / INFO_FILE).exists() and not overwrite:
        raise EntropicError(f"{folder}: signing credentials exist already ({load_credentials().describe()}); "
                            "pass --overwrite to replace them (the old ones are kept aside)")
    if cert is not None:
        chain_path, key_path = Path(cert), Path(key)
        for p in (chain_path, key_path):
            if not p.is_file():
                raise EntropicError(f"{p}: no such file")
        chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
        root_pem = None
    else:
        chain_pem, key_pem, root_pem = make_identity(_check_name(name or default_name()), int(days))
        chain_path, key_path = folder / CHAIN_FILE, folder / KEY_FILE
    leaf, algorithm = check_pair(chain_pem, key_pem, chain_path, key_path)
    subject = _common_name(leaf.subject)
    trial_signature(chain_pem, key_pem, algorithm, chain_path)

    if folder.exists() and overwrite and any(folder.iterdir()):
        aside = folder.with_name(f"{FOLDER}-replaced-{dt.datetime.now():%Y%m%d-%H%M%S}")
        shutil.move(str(folder), str(aside))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    _write_private(folder / KEY_FILE, key_pem)
    atomic_write_bytes(folder / CHAIN_FILE, chain_pem)
    if root_pem is not None:
        atomic_write_bytes(folder / ROOT_FILE, root_pem)
    # Written last: its presence says the folder is complete.
    atomic_write_json(folder / INFO_FILE, {
        "format": FORMAT, "version": VERSION, "made_here": cert is None, "subject": subject,
        "training_mining": training_mining,
        "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    })
    return load_credentials()


def trial_signature(chain_pem: bytes, key_pem: bytes, algorithm: str, where: Path) -> None:
    """Sign a tiny PNG in memory, so that a certificate C2PA refuses is refused at ``credentials init``."""
    import c2pa
    from PIL import Image

    from render.credentials.signing import manifest_definition, signing_context

    png = io.BytesIO()
    Image.new("L", (8, 8), 128).save(png, format="PNG")
    png.seek(0)
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(algorithm.encode(), chain_pem, key_pem, None))
        definition = manifest_definition({"trial": True}, "trial.png", "notAllowed")
        c2pa.Builder(definition, context=signing_context()).sign(signer, "image/png", png, io.BytesIO())
    except c2pa.C2paError as err:
        raise EntropicError(f"{where}: C2PA will not sign with this certificate ({' '.join(str(err).split())[:300]})") from None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only from the first byte on."""
    with atomic_path(path) as tmp:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)


def load_credentials(training_mining: str | None = None) -> Credentials:
    """The stored credentials, checked (:func:`check_pair`); ``training_mining`` overrides the stored choice."""
    folder = credentials_dir()
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        raise EntropicError(f"no signing credentials in {folder}: run `entropic credentials init` "
                            "(or pass --no-sign for an unsigned export)")
    info = read_json(info_path, "credentials file")
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise EntropicError(f"{info_path}: not an entropic credentials file (\"format\": \"{FORMAT}\")")
    stored_choice = info.get("training_mining", DEFAULT_TRAINING_MINING)
    if stored_choice not in TRAINING_MINING:
        raise EntropicError(f"{info_path}: training_mining {stored_choice!r}: expected one of {', '.join(TRAINING_MINING)}")
    if training_mining is not None and training_mining not in TRAINING_MINING:
        raise EntropicError(f"--training-mining {training_mining!r}: choose one of {', '.join(TRAINING_MINING)}")
    chain_path, key_path = folder / CHAIN_FILE, folder / KEY_FILE
    for p in (chain_path, key_path):
        if not p.is_file():
            raise EntropicError(f"{p}: missing; run `entropic credentials init --overwrite`")
    chain_pem, key_pem = chain_path.read_bytes(), key_path.read_bytes()
    leaf, algorithm = check_pair(chain_pem, key_pem, chain_path, key_path)
    return Credentials(
        chain_pem=chain_pem, key_pem=key_pem, algorithm=algorithm, subject=_common_name(leaf.subject),
        issuer=_common_name(leaf.issuer), not_after=leaf.not_valid_after_utc,
        made_here=bool(info.get("made_here")), training_mining=training_mining or stored_choice, folder=folder,
    )


def signing_credentials(training_mining: str | None = None, *, announce=None) -> Credentials:
    """The credentials a render signs with, made here on first use (``announce`` is told so).

    A first render should not fail for want of a key the artist never heard of; it makes one
    and says where, and ``entropic credentials init`` replaces it with a named or brought one.
    """
    if not (credentials_dir() / INFO_FILE).exists():
        made = init_credentials()
        if announce is not None:
            announce(f"made a signing key for content credentials in {made.folder} ({made.describe()}); "
                     "`entropic credentials init --overwrite --name NAME` names it, --no-sign skips signing")
    return load_credentials(training_mining)
