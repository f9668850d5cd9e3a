"""The hypothesis settings every property test runs with, and the text no parser may choke on."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile(
    "bridge-default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE") or "bridge-default")
"""The settings every property test runs with; `HYPOTHESIS_PROFILE=thorough pytest tests/hardening` runs many more."""

# Text as phones, browsers and Teams send it, and as no one should: controls, bidi marks, astral characters,
# lone surrogates (which arrive from JSON escapes).
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)
