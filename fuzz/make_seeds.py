#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/*/corpus/<target>/).

Seeds are valid inputs of each kind, so the fuzzer starts from the shapes the server
accepts; the hostile XLSX files of hub/tests/fixtures are copied in as well. The files
are named for what they are; `cargo fuzz cmin` later adds and drops hashed names. Run
from anywhere (needs python3-cryptography and openssl for the tokens):

    python3 fuzz/make_seeds.py
"""

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "hub", "tests", "fixtures"))
import make_fixtures  # noqa: E402  (the XLSX writer of the hostile fixtures)

BOUNDARY = "xuanfang-fuzz"  # fuzz/checks/upload.rs frames every body with it
SECRET = b"fuzz-secret-fuzz-secret-fuzz-sec"  # fuzz/checks/auth.rs
ISSUER, AUDIENCE = "https://id.example", "xuanfang"
FAR = 4102444800  # 2100-01-01: the seed tokens do not expire


def put(target, name, data):
    pkg = "hub" if target.startswith(("wire", "import")) else "gateway"
    d = os.path.join(HERE, pkg, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


# --- MessagePack, as rmp_serde::to_vec_named writes our messages --------------------


def mp(v):
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode("utf-8")
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b if len(b) < 256 else b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, list):
        head = bytes([0x90 | len(v)]) if len(v) < 16 else b"\xdc" + struct.pack(">H", len(v))
        return head + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        return head + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def wire():
    doc = open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8").read()
    frames = re.findall(r'^(\{"type":.*\})$', doc, re.M)
    assert len(frames) >= 17, len(frames)
    for text in frames:
        msg = json.loads(text)
        name = msg["type"]
        put("wire_json", f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.json", text)
        put("wire_msgpack", f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:8]}.msgpack", mp(msg))


# --- Sheets ---------------------------------------------------------------------------

UNITS_CSV = (
    "房源编号,楼栋,房号,楼层,户型,面积,朝向,租金\n"
    "U0001,1栋,101,1,一房一厅,40.5,南,1200\n"
    "U0002,1栋,102,1,两房一厅,62,南北,1800\n"
)
UNITS_CSV_EN = "unit_id,building,room,floor,layout,area,orientation,rent\nU1,B1,0101,-1,一房一厅,40,S,1200\n"
FAMILIES_CSV = (
    "家庭编号,姓名,排位,场次,可选户型\n"
    "F0001,张三丰,1,S1,一房一厅|两房一厅\n"
    "F0002,欧阳娜娜,2,S1,两房一厅\n"
)


def xlsx(rows):
    s = make_fixtures.Sheet()
    for r, values in enumerate(rows, start=1):
        s.row(r, values)
    path = os.path.join(HERE, "tmp.xlsx")
    old = make_fixtures.HERE
    make_fixtures.HERE = HERE
    try:
        make_fixtures.write("tmp.xlsx", s.xml(f"A1:H{len(rows)}"), s.shared_strings_xml())
        return open(path, "rb").read()
    finally:
        make_fixtures.HERE = old
        os.remove(path)


UNITS_XLSX = [make_fixtures.UNIT_HEADER, ["U1", "1栋", "101", 1, "一房一厅", 40.5, "南", 1200]]
FAMILIES_XLSX = [["家庭编号", "姓名", "排位", "场次", "可选户型"], ["F1", "张三丰", 1, "S1", "一房一厅"]]


def sheets():
    put("import_csv", "units.csv", UNITS_CSV)
    put("import_csv", "units-en.csv", UNITS_CSV_EN)
    put("import_csv", "units-bom.csv", b"\xef\xbb\xbf" + UNITS_CSV.encode())
    put("import_csv", "families.csv", FAMILIES_CSV)
    put("import_csv", "families-quoted.csv", 'family_id,name,rank,session,layouts\n"F1","李""四",3,,"一房一厅、两房一厅"\n')
    put("import_csv", "gbk.csv", "房源编号,楼栋\nU1,一\n".encode("gbk"))
    put("import_xlsx", "units.xlsx", xlsx(UNITS_XLSX))
    put("import_xlsx", "families.xlsx", xlsx(FAMILIES_XLSX))
    fixtures = os.path.join(ROOT, "hub", "tests", "fixtures")
    # Not the two that unpack to 17 and 65 MiB: every execution would inflate them
    # (tens of executions a second instead of hundreds); hub/tests/import.rs keeps them.
    slow = {"zip_bomb.xlsx", "big_shared_strings.xlsx"}
    for name in sorted(os.listdir(fixtures)):
        if name.endswith(".xlsx") and name not in slow:
            shutil.copy(os.path.join(fixtures, name), os.path.join(HERE, "hub", "corpus", "import_xlsx", name))


# --- Tokens and key sets -------------------------------------------------------------


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, claims, sign):
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def tokens():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    keys = os.path.join(ROOT, "tests", "tests", "fixtures", "jwks")
    load = lambda n: serialization.load_pem_private_key(open(os.path.join(keys, n), "rb").read(), None)
    rsa, ecp, ed = load("rsa-a.pem"), load("ec-p256.pem"), load("ed25519.pem")

    def es256(m):
        r, s = decode_dss_signature(ecp.sign(m, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    family = {"sub": "F0001", "role": "family", "exp": FAR, "iat": 1, "iss": ISSUER, "aud": AUDIENCE}
    operator = dict(family, sub="op1", role="operator")
    hs = lambda m: hmac.new(SECRET, m, hashlib.sha256).digest()
    rs = lambda m: rsa.sign(m, padding.PKCS1v15(), hashes.SHA256())
    put("jwt", "hs256-family", jwt({"alg": "HS256", "typ": "JWT"}, family, hs))
    put("jwt", "hs256-operator", jwt({"alg": "HS256", "typ": "JWT"}, operator, hs))
    put("jwt", "hs256-expired", jwt({"alg": "HS256"}, dict(family, exp=1000), hs))
    put("jwt", "rs256-kid", jwt({"alg": "RS256", "kid": "rsa-a"}, family, rs))
    put("jwt", "es256-kid", jwt({"alg": "ES256", "kid": "ec-p256"}, family, es256))
    put("jwt", "eddsa-kid", jwt({"alg": "EdDSA", "kid": "ed25519"}, operator, ed.sign))
    put("jwt", "alg-none", jwt({"alg": "none"}, family, lambda m: b""))
    pub_pem = rsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    put("jwt", "hs256-with-rsa-public-key", jwt({"alg": "HS256"}, family, lambda m: hmac.new(pub_pem, m, hashlib.sha256).digest()))

    public = json.load(open(os.path.join(keys, "public.json")))
    put("jwks", "set.json", json.dumps({"keys": list(public.values())}))
    one = dict(public["ed25519"])
    del one["kid"]
    put("jwks", "one-without-kid.json", json.dumps({"keys": [one]}))
    put("jwks", "oct.json", json.dumps({"keys": [{"kty": "oct", "kid": "s", "k": b64(SECRET)}]}))
    put("jwks", "enc-and-sig.json", json.dumps({"keys": [dict(public["rsa-a"], kid="e", use="enc"), public["ec-p256"]]}))


# --- Images and multipart bodies ------------------------------------------------------


def png(w, h, color_type=2, rows=None):
    """A PNG of w×h pixels (8-bit RGB, or gray+alpha with color_type=4)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    raw = b"".join(b"\x00" + bytes((x * 37 + y * 11) % 256 for x in range(w * channels)) for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def jpeg():
    """A baseline 8×8 gray JPEG, every coefficient zero (mid-gray): one quantisation
    table, one DC and one AC Huffman table of a single 1-bit code each, and a scan of
    two bits (DC difference 0, end of block) padded with ones."""

    def seg(marker, data):
        return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data

    dqt = seg(0xDB, b"\x00" + bytes([1] * 64))
    sof = seg(0xC0, b"\x08" + struct.pack(">HH", 8, 8) + b"\x01" + b"\x01\x11\x00")
    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1: symbol 0
    dht = seg(0xC4, b"\x00" + one_code + b"\x10" + one_code)
    sos = seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x3f" + b"\xff\xd9"


def part(name, data, filename=None, content_type=None):
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'
    if filename:
        head += f'; filename="{filename}"'
    head += "\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"\r\n" + (data if isinstance(data, bytes) else data.encode()) + b"\r\n"


def body(*parts):
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def uploads():
    small, gray_alpha, jpg = png(4, 3), png(2, 2, color_type=4), jpeg()
    put("image", "rgb.png", small)
    put("image", "gray-alpha.png", gray_alpha)
    put("image", "gray.jpg", jpg)
    put("image", "exif.jpg", jpg[:2] + b"\xff\xe1\x00\x10Exif\x00\x00GPS-secret" + jpg[2:])
    details = json.dumps({"phone": "13800138000", "bank": "工商银行", "card_number": "6222020200112233445", "luhn_confirmed": True})
    put("upload_details", "details.multipart", body(
        part("details", details, content_type="application/json"),
        part("card_front", small, "front.png", "image/png"),
        part("card_back", jpg, "back.jpg", "image/jpeg"),
    ))
    put("upload_signature", "signature.multipart", body(part("signature", gray_alpha, "signature.png", "image/png")))
    fields = [part(k, v) for k, v in [("name", "2026 第一批"), ("session_size", "1"), ("window_seconds", "90"), ("session_interval_minutes", "5"), ("first_session_start", "1767229200000")]]
    put("upload_batch", "csv.multipart", body(
        part("units", UNITS_CSV, "units.csv", "text/csv"),
        part("families", FAMILIES_CSV, "families.csv", "text/csv"),
        *fields,
    ))
    put("upload_batch", "xlsx.multipart", body(
        part("units", xlsx(UNITS_XLSX), "units.xlsx"),
        part("families", xlsx(FAMILIES_XLSX), "families.xlsx"),
        part("batch_id", "b1"),
    ))


if __name__ == "__main__":
    wire()
    sheets()
    tokens()
    uploads()
