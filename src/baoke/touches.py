"""The vocabulary of a touch: the channels it may go on and its priority classes.

A module of its own (no imports) because the playbooks, the contact policy and the settings
all speak it, and the settings must not pull in the template engine to know it.
"""

from __future__ import annotations

__all__ = ["CHANNELS", "PRIORITY_CLASSES"]

CHANNELS = ("sms", "wecom", "push", "email", "phone")
"""Channels a ``send`` step may use; a template variant is keyed by one of these (or ``script``)."""

PRIORITY_CLASSES = ("service", "care", "retention", "marketing")
"""Priority classes of a touch, most to least essential (the contact policy ranks by these)."""
