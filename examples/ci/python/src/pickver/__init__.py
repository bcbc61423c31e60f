"""Pick the newest release from a list of versions, the way pip orders them."""

from packaging.version import InvalidVersion, Version

__all__ = ["newest", "releases"]


def releases(versions):
    """The versions that parse and are not pre-releases, oldest first."""
    parsed = []
    for text in versions:
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if not version.is_prerelease:
            parsed.append(version)
    return [str(version) for version in sorted(parsed)]


def newest(versions):
    """The newest release among `versions`, or None when there is none."""
    found = releases(versions)
    return found[-1] if found else None
