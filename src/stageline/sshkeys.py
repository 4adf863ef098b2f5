"""OpenSSH public keys and SSH signatures (``SSHSIG``): the one reader of each.

A key is a line of ``authorized_keys`` syntax without options (``<type> <base64>
[comment]``), as ``stageline.yaml`` lists them; a signature is the armored ``SSHSIG``
that ``ssh-keygen -Y sign`` writes and git keeps in a commit's ``gpgsig`` header
(OpenSSH's PROTOCOL.sshsig). Everything read here may be written by an attacker:
lengths are bounded, every field is read exactly (nothing left over, nothing missing),
and any other shape is a ``SignatureError`` with one sentence, never an exception of
the decoder. Signatures are checked in-process with the ``cryptography`` library,
imported only when one is checked (the hook's start-up does not pay for it); a key
type this module does not check itself (a security key's ``sk-…``) is answered with
``Unchecked`` for the caller to hand to ``ssh-keygen``.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from dataclasses import dataclass

MAX_KEY_BYTES = 16384  # an RSA key of 16,384 bits is about 2 KiB: ample
MAX_SIGNATURE_BYTES = 16384
MIN_RSA_BITS = 2048
NAMESPACE = b"git"
ARMOR_BEGIN = "-----BEGIN SSH SIGNATURE-----"
ARMOR_END = "-----END SSH SIGNATURE-----"
_MAGIC = b"SSHSIG"
_CURVES = {b"nistp256": "sha256", b"nistp384": "sha384", b"nistp521": "sha512"}
CHECKED_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "ssh-rsa")
SECURITY_KEY_TYPES = ("sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
KEY_TYPES = CHECKED_TYPES + SECURITY_KEY_TYPES
FINGERPRINT_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class SignatureError(ValueError):
    """A key or signature that is not one OpenSSH writes, or that does not verify."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes  # the key as the wire format has it: what signatures carry
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """``SHA256:…`` as ``ssh-keygen -l`` prints it."""
        return fingerprint(self.blob)

    def line(self) -> str:
        """The key in ``authorized_keys`` syntax, without its comment."""
        return f"{self.type} {base64.b64encode(self.blob).decode()}"


@dataclass(frozen=True)
class Signature:
    """An ``SSHSIG`` read from its armor: the key it names, what it signs over."""

    key: PublicKey
    namespace: bytes
    hash_algorithm: str
    sig_type: str
    sig_blob: bytes  # the signature's own blob (after its type)
    raw_signature: bytes  # the ``string signature`` field whole (for ssh-keygen)
    armored: bytes


@dataclass(frozen=True)
class Unchecked:
    """A signature of a key type checked by ``ssh-keygen``, not here."""

    signature: Signature


def fingerprint(blob: bytes) -> str:
    import hashlib  # here: OpenSSL's start costs every hook run 3 ms, and few need it

    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class _Reader:
    """The SSH wire format: ``uint32`` and length-prefixed ``string``s, read exactly."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def uint32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise SignatureError(f"{self.what} ends too early")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def string(self) -> bytes:
        length = self.uint32()
        if length > len(self.data) - self.pos:
            raise SignatureError(f"{self.what} ends too early")
        value = self.data[self.pos:self.pos + length]
        self.pos += length
        return value

    def mpint(self) -> int:
        value = self.string()
        if value[:1] and value[0] & 0x80:
            raise SignatureError(f"{self.what} holds a negative number")
        if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
            raise SignatureError(f"{self.what} holds a number not in its shortest form")
        return int.from_bytes(value, "big")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise SignatureError(f"{self.what} has bytes after its end")


def _decoded(text: str, what: str) -> bytes:
    """Base64 as OpenSSH reads it: padded, and the one encoding of its bytes (Python's
    decoder ignores bits after the last byte, which OpenSSH refuses: a signature changed
    there would be good here and bad to git)."""
    if not _BASE64_RE.fullmatch(text) or len(text) % 4:
        raise SignatureError(f"{what} is not base64")
    try:
        blob = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise SignatureError(f"{what} is not base64") from None
    if base64.b64encode(blob).decode("ascii") != text:
        raise SignatureError(f"{what} is not base64 as OpenSSH writes it")
    return blob


# Ed25519 public keys of small order (with the sign bit cleared): for each, a signature
# verifies over any message. Encodings of y >= p are refused separately.
_SMALL_ORDER = frozenset(bytes.fromhex(h) for h in (
    "00" * 32, "01" + "00" * 31,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ec" + "ff" * 30 + "7f"))
_P25519 = 2 ** 255 - 19


def _weak_ed25519(point: bytes) -> bool:
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    return y >= _P25519 or point[:31] + bytes([point[31] & 0x7F]) in _SMALL_ORDER


def _text(value: bytes, what: str) -> str:
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError(f"{what} is not ASCII") from None
    if not text.isprintable():
        raise SignatureError(f"{what} holds control characters")
    return text


def parse_key_blob(blob: bytes) -> str:
    """The type of a key blob whose fields are all there, checked; else SignatureError."""
    if len(blob) > MAX_KEY_BYTES:
        raise SignatureError("the key is too long")
    reader = _Reader(blob, "the key")
    key_type = _text(reader.string(), "the key's type")
    if key_type not in KEY_TYPES:
        raise SignatureError(f"{key_type[:40]!r} is not a key type stageline reads; use "
                             "ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa")
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        point = reader.string()
        if len(point) != 32:
            raise SignatureError("an Ed25519 key is 32 bytes")
        if _weak_ed25519(point):
            raise SignatureError("this Ed25519 key is one any signature verifies for (a "
                                 "point of small order), not a real key")
    elif key_type.startswith(("ecdsa-", "sk-ecdsa-")):
        curve = reader.string()
        if key_type.startswith("ecdsa-") and f"ecdsa-sha2-{curve.decode('ascii', 'replace')}" \
                != key_type or curve not in _CURVES:
            raise SignatureError("the key's curve does not match its type")
        point = reader.string()
        if not point or point[0] != 4:
            raise SignatureError("the key's point is not an uncompressed point")
    else:  # ssh-rsa
        exponent, modulus = reader.mpint(), reader.mpint()
        if modulus.bit_length() < MIN_RSA_BITS or exponent < 3 or exponent % 2 == 0:
            raise SignatureError(f"an RSA key needs at least {MIN_RSA_BITS} bits")
    if key_type.startswith("sk-"):
        _text(reader.string(), "the security key's application")
    reader.end()
    return key_type


def parse_key(line: str) -> PublicKey:
    """``<type> <base64> [comment]``, as ``stageline.yaml`` lists a key."""
    if not isinstance(line, str) or "\n" in line or len(line) > 2 * MAX_KEY_BYTES:
        raise SignatureError("a key is one line: '<type> <base64> [comment]'")
    parts = line.strip().split(None, 2)
    if len(parts) < 2:
        raise SignatureError("a key is '<type> <base64> [comment]', as in a .pub file")
    key_type, data = parts[0], parts[1]
    if key_type not in KEY_TYPES:
        raise SignatureError(f"{key_type[:40]!r} is not a key type stageline reads (options "
                             "before the type are not read either); use ssh-ed25519, "
                             "ecdsa-sha2-nistp256/384/521 or ssh-rsa")
    blob = _decoded(data, "the key's data")
    if parse_key_blob(blob) != key_type:
        raise SignatureError("the key's data is of another type than its line says")
    return PublicKey(key_type, blob, parts[2].strip() if len(parts) > 2 else "")


def parse_armored(armored: bytes) -> Signature:
    """An armored ``SSHSIG``, every field read and checked for shape (not verified)."""
    if len(armored) > 2 * MAX_SIGNATURE_BYTES:
        raise SignatureError("the signature is too long")
    try:
        text = armored.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError("the signature is not ASCII") from None
    lines = text.rstrip("\n").split("\n")
    if len(lines) < 3 or lines[0] != ARMOR_BEGIN or lines[-1] != ARMOR_END:
        raise SignatureError("it is not an SSH signature ('-----BEGIN SSH SIGNATURE-----')")
    body = "".join(lines[1:-1])
    if not _BASE64_RE.fullmatch(body) or len(body) % 4:
        raise SignatureError("the signature's armor does not hold base64")
    blob = _decoded(body, "the signature's armor")
    if len(blob) > MAX_SIGNATURE_BYTES:
        raise SignatureError("the signature is too long")
    reader = _Reader(blob, "the signature")
    if blob[:6] != _MAGIC:
        raise SignatureError("the signature does not start with SSHSIG")
    reader.pos = 6
    if reader.uint32() != 1:
        raise SignatureError("the signature's version is not 1")
    key_blob = reader.string()
    key_type = parse_key_blob(key_blob)
    namespace = reader.string()
    reader.string()  # reserved
    hash_algorithm = _text(reader.string(), "the signature's hash")
    if hash_algorithm not in ("sha256", "sha512"):
        raise SignatureError(f"the signature's hash {hash_algorithm[:20]!r} is not sha256 or "
                             "sha512")
    raw_signature = reader.string()
    reader.end()
    inner = _Reader(raw_signature, "the signature")
    sig_type = _text(inner.string(), "the signature's type")
    sig_blob = raw_signature[inner.pos:]
    return Signature(PublicKey(key_type, key_blob), namespace, hash_algorithm, sig_type,
                     sig_blob, raw_signature, armored)


def signed_data(signature: Signature, message: bytes) -> bytes:
    """What the key signed: the preamble, namespace, hash name and the message's hash."""
    import hashlib

    digest = hashlib.new(signature.hash_algorithm, message).digest()

    def string(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    return (_MAGIC + string(signature.namespace) + string(b"") +
            string(signature.hash_algorithm.encode()) + string(digest))


def verify(signature: Signature, message: bytes) -> Unchecked | None:
    """None when ``signature`` is a good signature of ``message`` in git's namespace by
    the key it names; ``Unchecked`` for a security key (``ssh-keygen`` decides);
    SignatureError otherwise."""
    if signature.namespace != NAMESPACE:
        raise SignatureError(f"the signature is for {_shown(signature.namespace)}, not for git "
                             "commits (namespace 'git')")
    key_type = signature.key.type
    if key_type in SECURITY_KEY_TYPES:
        return Unchecked(signature)
    from cryptography.exceptions import InvalidSignature  # a signature to check: only now
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    data = signed_data(signature, message)
    key = _Reader(signature.key.blob, "the key")
    key.string()
    sig = _Reader(signature.sig_blob, "the signature")
    try:
        if key_type == "ssh-ed25519":
            if signature.sig_type != key_type:
                raise SignatureError("the signature's type is not its key's")
            raw = sig.string()
            sig.end()
            ed25519.Ed25519PublicKey.from_public_bytes(key.string()).verify(raw, data)
        elif key_type.startswith("ecdsa-"):
            if signature.sig_type != key_type:
                raise SignatureError("the signature's type is not its key's")
            curve_name = key.string()
            curve = {b"nistp256": ec.SECP256R1(), b"nistp384": ec.SECP384R1(),
                     b"nistp521": ec.SECP521R1()}[curve_name]
            digest = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                      "sha512": hashes.SHA512()}[_CURVES[curve_name]]
            point = key.string()
            pair = _Reader(sig.string(), "the signature")
            sig.end()
            r, s = pair.mpint(), pair.mpint()
            pair.end()
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
            public.verify(encode_dss_signature(r, s), data, ec.ECDSA(digest))
        else:  # ssh-rsa: SHA-2 signatures only, as ssh-keygen -Y verify
            rsa_digest = {"rsa-sha2-256": hashes.SHA256(), "rsa-sha2-512": hashes.SHA512()}
            if signature.sig_type not in rsa_digest:
                raise SignatureError("an RSA signature must be rsa-sha2-256 or rsa-sha2-512")
            raw = sig.string()
            sig.end()
            exponent, modulus = key.mpint(), key.mpint()
            rsa.RSAPublicNumbers(exponent, modulus).public_key().verify(
                raw, data, padding.PKCS1v15(), rsa_digest[signature.sig_type])
    except InvalidSignature:
        raise SignatureError("the signature does not verify: the commit was changed after "
                             "it was signed, or it was signed by another key") from None
    except ValueError as exc:  # a point off the curve, a key cryptography refuses
        if isinstance(exc, SignatureError):
            raise
        raise SignatureError("the signature's key or value cannot be read") from None
    return None


def _shown(value: bytes) -> str:
    return repr(value.decode("ascii", "replace")[:40])
