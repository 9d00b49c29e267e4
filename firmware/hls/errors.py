"""The HLS exporter's error type."""
from __future__ import annotations

from l1ad.trigger.errors import UserInputError


class HLSExportError(UserInputError):
    """The QModel cannot be written as an HLS project as the IR describes it; the message names the layer or
    tensor."""
