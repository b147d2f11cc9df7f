"""Provider secrets from the environment and from ``BAOKE_SECRETS_FILE``.

The file is what a Docker or Kubernetes secret mount gives: ``NAME=value`` lines with comments,
quotes and ``export``. The environment wins over the file, only ``BAOKE_*`` names are read, and
an error says where the problem is without ever repeating what the line said.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from baoke.channels.secrets import load_secrets
from baoke.errors import ConfigError


def _file(tmp_path: Path, text: str, name: str = "baoke.secrets") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_only_baoke_names_are_read_from_the_environment() -> None:
    found = load_secrets({"BAOKE_ALIYUN_ACCESS_KEY_ID": "LTAI5t", "PATH": "/bin", "HOME": "/x"})
    assert found == {"BAOKE_ALIYUN_ACCESS_KEY_ID": "LTAI5t"}


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BAOKE_SECRETS_FILE", raising=False)
    monkeypatch.setenv("BAOKE_CALLBACK_TOKEN", "cb-from-env")
    monkeypatch.setenv("NOT_BAOKE_TOKEN", "other")
    found = load_secrets()
    assert found["BAOKE_CALLBACK_TOKEN"] == "cb-from-env"
    assert "NOT_BAOKE_TOKEN" not in found


def test_a_secrets_file_with_comments_quotes_and_export(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "# provider keys, mounted by the orchestrator\n"
        "\n"
        "BAOKE_ALIYUN_ACCESS_KEY_ID=LTAI5tPlain\n"
        'BAOKE_ALIYUN_ACCESS_KEY_SECRET="double quoted secret"\n'
        "BAOKE_TENCENT_SECRET_KEY='single quoted'\n"
        "export BAOKE_WECOM_SECRET=exported-value\n"
        "   # an indented comment\n"
        "  BAOKE_WECOM_TOKEN = spaced  \n"
        "BAOKE_WECOM_AES_KEY=abc=def==\n"
        "OTHER_TOOL_TOKEN=not-ours\n",
    )
    found = load_secrets({"BAOKE_SECRETS_FILE": str(path)})
    assert found["BAOKE_ALIYUN_ACCESS_KEY_ID"] == "LTAI5tPlain"
    assert found["BAOKE_ALIYUN_ACCESS_KEY_SECRET"] == "double quoted secret"
    assert found["BAOKE_TENCENT_SECRET_KEY"] == "single quoted"
    assert found["BAOKE_WECOM_SECRET"] == "exported-value"
    assert found["BAOKE_WECOM_TOKEN"] == "spaced"
    assert found["BAOKE_WECOM_AES_KEY"] == "abc=def=="  # only the first '=' separates
    assert "OTHER_TOOL_TOKEN" not in found
    assert not any(name.startswith("#") for name in found)


def test_mismatched_quotes_are_kept_as_written(tmp_path: Path) -> None:
    path = _file(tmp_path, "BAOKE_A=\"half'\nBAOKE_B=\"\nBAOKE_C=''\n")
    found = load_secrets({"BAOKE_SECRETS_FILE": str(path)})
    assert found["BAOKE_A"] == "\"half'"
    assert found["BAOKE_B"] == '"'
    assert found["BAOKE_C"] == ""


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = _file(tmp_path, "BAOKE_JPUSH_MASTER_SECRET=from-file\nBAOKE_SMTP_PASSWORD=file-only\n")
    found = load_secrets({"BAOKE_SECRETS_FILE": str(path), "BAOKE_JPUSH_MASTER_SECRET": "from-env"})
    assert found["BAOKE_JPUSH_MASTER_SECRET"] == "from-env"
    assert found["BAOKE_SMTP_PASSWORD"] == "file-only"


def test_the_file_is_read_through_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, "BAOKE_WEBHOOK_SECRET=from-file\n")
    monkeypatch.setenv("BAOKE_SECRETS_FILE", str(path))
    monkeypatch.delenv("BAOKE_WEBHOOK_SECRET", raising=False)
    assert load_secrets()["BAOKE_WEBHOOK_SECRET"] == "from-file"


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("BAOKE_OK=1\nBAOKE_SECRET_WITHOUT_EQUALS_s3cr3tV4lue\n", 2),
        ("# comment\n\nBAOKE_OK=1\n=s3cr3tV4lue\n", 4),
        ("export s3cr3tV4lue\n", 1),
    ],
)
def test_a_malformed_line_names_its_number_but_not_its_text(
    tmp_path: Path, text: str, number: int
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_secrets({"BAOKE_SECRETS_FILE": str(path)})
    message = str(caught.value)
    assert f"{path}:{number}:" in message
    assert "s3cr3tV4lue" not in message
    assert "NAME=value" in message


def test_a_missing_secrets_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "baoke.secrets"
    with pytest.raises(ConfigError, match="BAOKE_SECRETS_FILE") as caught:
        load_secrets({"BAOKE_SECRETS_FILE": str(missing)})
    assert str(missing) in str(caught.value)


def test_an_unreadable_secrets_file_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "binary.secrets"
    path.write_bytes(b"BAOKE_KEY=s3cr3t\xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot read the secrets file") as caught:
        load_secrets({"BAOKE_SECRETS_FILE": str(path)})
    assert "s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read the secrets file"):
        load_secrets({"BAOKE_SECRETS_FILE": str(tmp_path)})  # a directory


def test_a_file_saved_with_a_byte_order_mark_keeps_its_first_secret(tmp_path: Path) -> None:
    # Notepad on Windows writes UTF-8 with a BOM; it is invisible, and must not hide a name.
    path = tmp_path / "bom.secrets"
    path.write_bytes("BAOKE_ALIYUN_ACCESS_KEY_ID=LTAI5tBom\nBAOKE_B=2\n".encode("utf-8-sig"))
    found = load_secrets({"BAOKE_SECRETS_FILE": str(path)})
    assert found.get("BAOKE_ALIYUN_ACCESS_KEY_ID") == "LTAI5tBom"
    assert found["BAOKE_B"] == "2"
