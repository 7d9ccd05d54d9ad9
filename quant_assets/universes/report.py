"""What `quant-assets universes` prints: the list of universes, one universe's members, its history; each as text
or as JSON-ready data."""

from __future__ import annotations

import datetime as dt

from quant_assets.universes.versions import Recorded, Universes, Version


def _when(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def listing(store: Universes, recorded: Recorded) -> dict:
    """Every universe (file or recorded): members, current version, as of, whether its file exists, set-aside
    lines; the versions this look recorded; the files set aside whole."""
    new = {v.universe for v in recorded.new}
    rows = []
    for name in store.names():
        current = store.current(name)
        universe = recorded.folder.universes.get(name)
        rows.append(
            {
                "universe": name,
                "members": len(current.members) if current else 0,
                "version": current.version if current else None,
                "as_of": current.as_of.isoformat() if current else None,
                "file": str(universe.path) if universe else None,
                "recorded_now": name in new,
                "set_aside": list(universe.set_aside) if universe else [],
            }
        )
    return {
        "folder": str(store.folder),
        "store": str(store.store),
        "universes": rows,
        "set_aside": [*recorded.folder.set_aside],
    }


def listing_text(data: dict) -> str:
    lines = [f"universes in {data['folder']} (versions under {data['store']})"]
    if not data["universes"]:
        lines.append(f"no universe yet: write one symbol per line into {data['folder']}/<name>.txt")
    else:
        lines.append(f"{'universe':<20} {'members':>7}  {'version':<12}  as of (UTC)")
    for row in data["universes"]:
        notes = [note for note, shown in (("new version", row["recorded_now"]), ("no file", not row["file"])) if shown]
        as_of = _when(dt.datetime.fromisoformat(row["as_of"])) if row["as_of"] else "-"
        suffix = f"  ({', '.join(notes)})" if notes else ""
        lines.append(f"{row['universe']:<20} {row['members']:>7,}  {row['version'] or '-':<12}  {as_of}{suffix}")
    aside = [*data["set_aside"], *(line for row in data["universes"] for line in row["set_aside"])]
    if aside:
        lines.append(f"set aside ({len(aside)}):")
        lines += [f"  {line}" for line in aside]
    return "\n".join(lines)


def version_data(version: Version | None, name: str, when: dt.date | None = None) -> dict:
    """A universe's members at one version (the one in effect `when`, or the current one)."""
    return {
        "universe": name,
        "as_of_asked": when.isoformat() if when else None,
        "version": version.version if version else None,
        "as_of": version.as_of.isoformat() if version else None,
        "members": list(version.members) if version else [],
    }


def version_text(data: dict) -> str:
    asked = f" on {data['as_of_asked']}" if data["as_of_asked"] else ""
    if data["version"] is None:
        return f"universe {data['universe']} had no version yet{asked}"
    head = (
        f"universe {data['universe']}{asked}: version {data['version']} as of "
        f"{_when(dt.datetime.fromisoformat(data['as_of']))} UTC, {len(data['members']):,} members"
    )
    return "\n".join([head, *data["members"]])


def history_data(store: Universes, name: str) -> dict:
    """Each version of a universe with what it added and removed, oldest first."""
    return {
        "universe": name,
        "versions": [
            {
                "sequence": version.sequence,
                "version": version.version,
                "as_of": version.as_of.isoformat(),
                "members": len(version.members),
                "added": list(change.added),
                "removed": list(change.removed),
            }
            for version, change in store.changes(name)
        ],
    }


def history_text(data: dict) -> str:
    lines = [f"universe {data['universe']}: {len(data['versions'])} versions"]
    for row in data["versions"]:
        when = _when(dt.datetime.fromisoformat(row["as_of"]))
        lines.append(f"{row['sequence']:>4}  {row['version']}  {when} UTC  {row['members']:,} members")
        if row["added"]:
            lines.append(f"      added ({len(row['added'])}): {' '.join(row['added'])}")
        if row["removed"]:
            lines.append(f"      removed ({len(row['removed'])}): {' '.join(row['removed'])}")
    return "\n".join(lines)
