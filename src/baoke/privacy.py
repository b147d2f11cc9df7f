"""Masking of personal data for display: mobiles are masked unless a role needs them."""

from __future__ import annotations


def mask_mobile(mobile: str | None) -> str | None:
    """'+8613800138000' → '138****8000'; other numbers keep their first 3 and last 4 digits."""
    if not mobile:
        return mobile
    digits = mobile[3:] if mobile.startswith("+86") else mobile.lstrip("+")
    if len(digits) <= 7:
        return "*" * len(digits)
    return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"


def mask_name(name: str | None) -> str | None:
    """'张伟' → '张*', '欧阳娜娜' → '欧***': the surname stays for the greeting."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)
