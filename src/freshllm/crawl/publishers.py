"""fundus publishers by country code (``us``) or name (``TheGuardian``, ``uk.TheGuardian``)."""

from __future__ import annotations

from typing import Any


def _publisher_index() -> tuple[dict[str, Any], dict[str, Any]]:
    """(country code -> fundus PublisherGroup, lowercased name -> Publisher)."""
    from fundus import PublisherCollection

    groups = {code.lower(): group for code, group in PublisherCollection.get_subgroup_mapping().items()}
    names: dict[str, Any] = {}
    for code, group in groups.items():
        for publisher in group:
            for key in (publisher.__name__, f"{code}.{publisher.__name__}", publisher.name):
                names.setdefault(key.lower(), publisher)
    return groups, names


def publisher_problems(entries: list) -> list[tuple[int, str]]:
    groups, names = _publisher_index()
    problems = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, str):
            problems.append((i, f"expected a string, got {entry!r}"))
        elif entry.lower() not in groups and entry.lower() not in names:
            problems.append((i, f"unknown country code or fundus publisher {entry!r} "
                                f"(country codes: {', '.join(sorted(groups))}; or names like 'TheGuardian', "
                                f"'uk.TheGuardian')"))
    return problems


def resolve_publishers(entries: list[str]) -> list[Any]:
    """Country codes -> fundus PublisherGroups; publisher names -> Publishers."""
    groups, names = _publisher_index()
    return [groups.get(e.lower()) or names[e.lower()] for e in entries]
