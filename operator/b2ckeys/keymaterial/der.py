"""A small, bounded BER/DER reader and the PKCS#12 (PFX) layout facts b2ckeys needs from it.

`cryptography` opens a PFX but cannot say *why* it failed ("Invalid password or PKCS12 data"),
and silently keeps only the first of several private keys. Reading the outer PFX structure
ourselves tells a wrong password apart from garbage, and counts the key bags that are visible
without decrypting. BER (indefinite lengths, constructed OCTET STRINGs) is accepted because
Windows and older Java tools still write PFX files that way.

Everything here is pure and works on untrusted bytes: nesting depth, lengths and element counts
are bounded, and every failure is a `DerError` whose text never quotes the input.
"""

from __future__ import annotations

from dataclasses import dataclass

# Real PFX files nest about 10 levels deep; 32 leaves room and stops crafted deep nesting from
# exhausting the stack.
MAX_DEPTH = 32
# A PFX with a long chain has a few dozen bags; 1000 elements per level bounds the work a crafted
# file can cause without refusing anything real.
MAX_ELEMENTS = 1000

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_SEQUENCE = 0x30
TAG_CONTEXT_0 = 0xA0  # [0] EXPLICIT, constructed

OID_DATA = "1.2.840.113549.1.7.1"
OID_ENCRYPTED_DATA = "1.2.840.113549.1.7.6"
OID_KEY_BAG = "1.2.840.113549.1.12.10.1.1"
OID_SHROUDED_KEY_BAG = "1.2.840.113549.1.12.10.1.2"
OID_CERT_BAG = "1.2.840.113549.1.12.10.1.3"
OID_SAFE_CONTENTS_BAG = "1.2.840.113549.1.12.10.1.6"


class DerError(ValueError):
    """The bytes are not the structure expected. The message names the structure, not the data."""


@dataclass(frozen=True)
class Tlv:
    """One BER element. `content` is the raw content octets (without an end-of-contents marker)."""

    tag: int  # the identifier octet: class, constructed bit and tag number
    content: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)


def read_one(data: bytes) -> Tlv:
    """Read exactly one element spanning all of `data`."""
    tlv, end = _read(data, 0, 0)
    if end != len(data):
        raise DerError("trailing bytes after the outer element")
    return tlv


def children(tlv: Tlv, *, depth: int = 0) -> list[Tlv]:
    """The elements inside a constructed element."""
    if not tlv.constructed:
        raise DerError("expected a constructed element")
    out: list[Tlv] = []
    offset = 0
    while offset < len(tlv.content):
        if len(out) >= MAX_ELEMENTS:
            raise DerError("too many elements")
        child, offset = _read(tlv.content, offset, depth + 1)
        out.append(child)
    return out


def expect(tlv: Tlv, tag: int, what: str) -> Tlv:
    if tlv.tag != tag:
        raise DerError(f"expected {what}")
    return tlv


def octet_string(tlv: Tlv, *, depth: int = 0) -> bytes:
    """The value of an OCTET STRING, joining the pieces of a BER constructed one."""
    if tlv.tag == TAG_OCTET_STRING:
        return tlv.content
    if tlv.tag == TAG_OCTET_STRING | 0x20:
        if depth >= MAX_DEPTH:
            raise DerError("nesting too deep")
        return b"".join(octet_string(c, depth=depth + 1) for c in children(tlv, depth=depth))
    raise DerError("expected an OCTET STRING")


def oid(tlv: Tlv) -> str:
    """Dotted text of an OBJECT IDENTIFIER."""
    expect(tlv, TAG_OID, "an OBJECT IDENTIFIER")
    body = tlv.content
    if not body or body[-1] & 0x80:
        raise DerError("malformed OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def small_integer(tlv: Tlv) -> int:
    expect(tlv, TAG_INTEGER, "an INTEGER")
    # Version numbers and iteration counts fit in 4 bytes; anything longer is not a PFX we read.
    if not 0 < len(tlv.content) <= 4:
        raise DerError("INTEGER out of range")
    return int.from_bytes(tlv.content, "big", signed=True)


def _read(data: bytes, offset: int, depth: int) -> tuple[Tlv, int]:
    if depth >= MAX_DEPTH:
        raise DerError("nesting too deep")
    if offset + 2 > len(data):
        raise DerError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in PKCS#12")
    first = data[offset + 1]
    offset += 2
    if first == 0x80:  # BER indefinite length: children up to an end-of-contents marker
        if not tag & 0x20:
            raise DerError("indefinite length on a primitive element")
        start = offset
        count = 0
        while True:
            if offset + 2 > len(data):
                raise DerError("missing end-of-contents")
            if data[offset] == 0 and data[offset + 1] == 0:
                return Tlv(tag, data[start:offset]), offset + 2
            count += 1
            if count > MAX_ELEMENTS:
                raise DerError("too many elements")
            _, offset = _read(data, offset, depth + 1)
    if first & 0x80:
        size = first & 0x7F
        # Four length octets address 4 GiB, far beyond any input the callers allow.
        if not 0 < size <= 4 or offset + size > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[offset : offset + size], "big")
        offset += size
    else:
        length = first
    end = offset + length
    if end > len(data):
        raise DerError("element longer than its container")
    return Tlv(tag, data[offset:end]), end


# --- PKCS#12 --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pkcs12Layout:
    """What the unencrypted parts of a PFX say (RFC 7292)."""

    has_mac: bool
    # Private keys in readable SafeContents. Keys inside an encrypted ContentInfo cannot be
    # counted without the password; no mainstream tool puts them there.
    visible_key_bags: int
    encrypted_contents: int


def pkcs12_layout(pfx: bytes) -> Pkcs12Layout:
    """Check the PFX shape (version 3, password-integrity authSafe) and count its key bags."""
    top = children(expect(read_one(pfx), TAG_SEQUENCE, "a PFX SEQUENCE"))
    if len(top) not in (2, 3):
        raise DerError("a PFX has two or three elements")
    if small_integer(top[0]) != 3:
        raise DerError("unsupported PFX version")
    content_type, content = _content_info(top[1])
    if content_type != OID_DATA or content is None:
        raise DerError("the authSafe is not password-integrity data")
    if len(top) == 3:
        expect(top[2], TAG_SEQUENCE, "MacData")
    safes = children(expect(read_one(octet_string(content)), TAG_SEQUENCE, "AuthenticatedSafe"))
    keys = 0
    encrypted = 0
    for safe in safes:
        safe_type, safe_content = _content_info(safe)
        if safe_type == OID_DATA and safe_content is not None:
            keys += _count_key_bags(read_one(octet_string(safe_content)), 0)
        else:
            encrypted += 1
    return Pkcs12Layout(has_mac=len(top) == 3, visible_key_bags=keys, encrypted_contents=encrypted)


def _content_info(tlv: Tlv) -> tuple[str, Tlv | None]:
    parts = children(expect(tlv, TAG_SEQUENCE, "ContentInfo"))
    if not parts:
        raise DerError("empty ContentInfo")
    content_type = oid(parts[0])
    if len(parts) == 1:
        return content_type, None
    wrapped = children(expect(parts[1], TAG_CONTEXT_0, "[0] content"))
    if len(wrapped) != 1:
        raise DerError("[0] content holds one element")
    return content_type, wrapped[0]


def _count_key_bags(safe_contents: Tlv, depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise DerError("nesting too deep")
    count = 0
    for bag in children(expect(safe_contents, TAG_SEQUENCE, "SafeContents")):
        parts = children(expect(bag, TAG_SEQUENCE, "SafeBag"))
        if len(parts) < 2:
            raise DerError("SafeBag without a value")
        bag_id = oid(parts[0])
        if bag_id in (OID_KEY_BAG, OID_SHROUDED_KEY_BAG):
            count += 1
        elif bag_id == OID_SAFE_CONTENTS_BAG:
            inner = children(expect(parts[1], TAG_CONTEXT_0, "[0] bag value"))
            if len(inner) != 1:
                raise DerError("[0] bag value holds one element")
            count += _count_key_bags(inner[0], depth + 1)
    return count
