"""ICC colour profiles by name, read by Pillow's LittleCMS binding: no torch here, since `evc info`
shows a file's profile without loading a model (and Pillow is imported only for a file that has one)."""

from __future__ import annotations

import io


def profile_description(icc_profile: bytes) -> str | None:
    """The profile's own name (e.g. "Display P3"), or None when LittleCMS cannot read it."""
    from PIL import ImageCms

    try:
        text = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    return text.strip() or None
