"""WXBizMsgCrypt against Tencent's published sample vectors, and round trips.

Vectors:

* ``QDG6eK`` / ``wx5823bf96d3bd56c7`` / ``jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C``: the
  URL-verification GET (msg_signature 5c45ff5e…, timestamp 1409659589, nonce 263014780) and the
  POST (msg_signature 477715d1…, timestamp 1409659813, nonce 1372623149) of Tencent's official
  WXBizMsgCrypt sample (Sample.cs / Sample.cpp of the download linked from
  developer.work.weixin.qq.com document 91144; the same values appear in the C++/PHP/Java
  samples). The POST's plaintext is the one document 91144/90968 (加解密方案说明 → 举例说明)
  prints; the echostr decrypts to 1616140317555161061, with ReceiveId wx5823bf96d3bd56c7.
* ``hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo`` / ``ww1436e0e65a779aee``: the official Python sample
  (github.com/sbzhu/weworkapi_python, callback/Sample.py), whose POST decrypts to the reply
  text its step 3 shows (Content 你好, FromUserName ChenJiaShun).
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from baoke.channels.wecom_crypto import (
    WecomCrypto,
    WecomCryptoError,
    WXBizMsgCrypt,
    parse_xml,
    signature,
)
from baoke.errors import BaokeError

TOKEN = "QDG6eK"
CORP_ID = "wx5823bf96d3bd56c7"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"

VERIFY_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
VERIFY_TIMESTAMP = "1409659589"
VERIFY_NONCE = "263014780"
VERIFY_ECHOSTR = (
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
)
VERIFY_PLAINTEXT = "1616140317555161061"

POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_BODY = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>"
    f"<Encrypt><![CDATA[{POST_ENCRYPT}]]></Encrypt>"
    "<AgentID><![CDATA[218]]></AgentID></xml>"
)
# Document 91144's "解密后得到明文" (the sample's own line breaks included).
POST_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>"
)

PY_TOKEN = "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo"
PY_AES_KEY = "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt"
PY_CORP_ID = "ww1436e0e65a779aee"
PY_POST_BODY = (
    "<xml><ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>\n<Encrypt><![CDATA["
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkA"
    "gGzBhzTtRLNshw2AEew+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQb"
    "Z9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24YhmZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU"
    "2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwocugux082f49HKYg84EpHSGXAyh+/oxwa"
    "WbvL6aSDPOYuPDGOCI8jmnKiypE+]]></Encrypt>\n<AgentID><![CDATA[1000002]]></AgentID>\n</xml>"
)


@pytest.fixture
def crypto() -> WecomCrypto:
    return WecomCrypto(TOKEN, AES_KEY, CORP_ID)


# -- the official vectors ----------------------------------------------------------------------


def test_signature_of_the_samples() -> None:
    assert signature(TOKEN, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR) == VERIFY_SIGNATURE
    assert signature(TOKEN, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE


def test_verify_url_official_sample(crypto: WecomCrypto) -> None:
    answer = crypto.verify_url(VERIFY_SIGNATURE, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)
    assert answer == VERIFY_PLAINTEXT


def test_decrypt_official_post_sample(crypto: WecomCrypto) -> None:
    plaintext = crypto.decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    assert plaintext == POST_PLAINTEXT
    root = ET.fromstring(plaintext)
    assert root.findtext("Content") == "hello"
    assert root.findtext("MsgId") == "4561255354251345929"


def test_decrypt_official_python_sample() -> None:
    crypto = WXBizMsgCrypt(PY_TOKEN, PY_AES_KEY, PY_CORP_ID)
    echo = crypto.verify_url(
        "012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb",
        "1476416373",
        "47744683",
        "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA==",
    )
    assert echo.isdigit()
    plaintext = crypto.decrypt(
        "0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779", "1597212914", PY_POST_BODY
    )
    assert plaintext == (
        "<xml><ToUserName>ww1436e0e65a779aee</ToUserName><FromUserName>ChenJiaShun</FromUserName>"
        "<CreateTime>1476422779</CreateTime><MsgType>text</MsgType><Content>你好</Content>"
        "<MsgId>1456453720</MsgId><AgentID>1000002</AgentID></xml>"
    )


# -- refusals ----------------------------------------------------------------------------------


def test_bad_signature(crypto: WecomCrypto) -> None:
    with pytest.raises(WecomCryptoError, match="signature does not match") as caught:
        crypto.verify_url("0" * 40, VERIFY_TIMESTAMP, VERIFY_NONCE, VERIFY_ECHOSTR)
    assert isinstance(caught.value, BaokeError)
    # a tampered timestamp or nonce breaks the signature too
    with pytest.raises(WecomCryptoError, match="signature"):
        crypto.decrypt(POST_SIGNATURE, "1409659814", POST_NONCE, POST_BODY)


def test_wrong_token_says_which_secret(crypto: WecomCrypto) -> None:
    other = WecomCrypto("another", AES_KEY, CORP_ID)
    with pytest.raises(WecomCryptoError, match="BAOKE_WECOM_TOKEN") as caught:
        other.decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    assert "another" not in str(caught.value)
    assert AES_KEY not in str(caught.value)


def test_wrong_key_is_bad_padding() -> None:
    # A different key of the right shape decrypts to noise; checked without a signature.
    other = WecomCrypto(TOKEN, "a" * 43, CORP_ID)
    with pytest.raises(WecomCryptoError, match=r"bad padding .*BAOKE_WECOM_AES_KEY"):
        other.decrypt_text(POST_ENCRYPT)


def test_bad_padding_message(crypto: WecomCrypto) -> None:
    # A ciphertext whose last byte decrypts to a padding value above 32.
    key = base64.b64decode(AES_KEY + "=")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    junk = encryptor.update(b"x" * 31 + bytes([200])) + encryptor.finalize()
    with pytest.raises(WecomCryptoError, match="bad padding"):
        crypto.decrypt_text(base64.b64encode(junk).decode())


def test_wrong_receive_id() -> None:
    other = WecomCrypto(TOKEN, AES_KEY, "ww_another_corp")
    with pytest.raises(WecomCryptoError, match="another corp"):
        other.decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<xml><ToUserName>x</ToUserName></xml>", "no Encrypt"),
        ("<xml><Encrypt>", "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>', "DTD"),
    ],
)
def test_unreadable_bodies(crypto: WecomCrypto, body: str, reason: str) -> None:
    with pytest.raises(WecomCryptoError, match=reason):
        crypto.decrypt(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, body)


def test_not_base64(crypto: WecomCrypto) -> None:
    with pytest.raises(WecomCryptoError, match="base64"):
        crypto.decrypt_text("not base64 at all!")
    with pytest.raises(WecomCryptoError, match="AES blocks"):
        crypto.decrypt_text(base64.b64encode(b"short").decode())


@pytest.mark.parametrize("key", ["", "short", "a" * 42 + "=", "a" * 44])
def test_bad_encoding_aes_key(key: str) -> None:
    with pytest.raises(WecomCryptoError, match="43 letters and digits"):
        WecomCrypto(TOKEN, key, CORP_ID)


def test_repr_hides_secrets(crypto: WecomCrypto) -> None:
    assert TOKEN not in repr(crypto)
    assert AES_KEY not in repr(crypto)


# -- round trips -------------------------------------------------------------------------------


def test_encrypt_reply_round_trip(crypto: WecomCrypto) -> None:
    reply = (
        "<xml><ToUserName><![CDATA[mycreate]]></ToUserName><Content><![CDATA[这是一个中文测试"
        "]]></Content></xml>"
    )
    envelope = crypto.encrypt(reply, "1372623149", "1409659813")
    root = parse_xml(envelope)
    assert root.findtext("TimeStamp") == "1409659813"
    assert root.findtext("Nonce") == "1372623149"
    encrypted = root.findtext("Encrypt") or ""
    assert root.findtext("MsgSignature") == signature(TOKEN, "1409659813", "1372623149", encrypted)
    # The envelope is itself a valid POST body for decrypt.
    signed = root.findtext("MsgSignature") or ""
    assert crypto.decrypt(signed, "1409659813", "1372623149", envelope) == reply


def test_padding_is_to_32_bytes(crypto: WecomCrypto) -> None:
    for size in range(0, 70):
        raw = base64.b64decode(crypto.encrypt_text("x" * size))
        assert len(raw) % 32 == 0
    # 16 random + 4 length + 12 message + 18 corp id = 50 bytes → padded to 64 (pad 14).
    assert len(base64.b64decode(crypto.encrypt_text("x" * 12))) == 64


def test_fixed_prefix_is_reproducible(crypto: WecomCrypto) -> None:
    prefix = bytes(range(16))
    assert crypto.encrypt_text("hi", prefix) == crypto.encrypt_text("hi", prefix)
    assert crypto.encrypt_text("hi") != crypto.encrypt_text("hi")
    with pytest.raises(WecomCryptoError, match="16 bytes"):
        crypto.encrypt_text("hi", b"short")


def test_nonce_with_cdata_end_survives(crypto: WecomCrypto) -> None:
    envelope = crypto.encrypt("<xml/>", "a]]>b", "1")
    assert parse_xml(envelope).findtext("Nonce") == "a]]>b"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_round_trip_any_text(text: str) -> None:
    crypto = WecomCrypto(TOKEN, AES_KEY, CORP_ID)
    encrypted = crypto.encrypt_text(text)
    sig = signature(TOKEN, "1", "2", encrypted)
    assert crypto.verify_url(sig, "1", "2", encrypted) == text
