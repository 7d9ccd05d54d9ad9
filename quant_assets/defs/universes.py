"""The named universes' Dagster wiring. The work is in `universes/`.

- `UniverseFolder` (resource key `universes`): the hand-edited universe files and the data folder their versions
  are recorded under. `resolve(name)` records the folder first, so an edit takes effect at the next run.
- `universe_for_run(context, universes, name)`: the version a run uses, tagged on the run
  (`quant_assets/universe`, `quant_assets/universe_version`), with the metadata an asset reports.
- `universe_versions`, a sensor (every minute, running by default): records the folder each tick and reports the
  new versions in its tick log and cursor; it launches nothing.
"""

from __future__ import annotations

import json

import dagster as dg
from pydantic import Field

from quant_assets.qlib.directory import QlibDirectory, write_universe_instruments
from quant_assets.settings import DEFAULT_DATA, DEFAULT_UNIVERSES_DIR, Settings
from quant_assets.universes import Recorded, UniverseError, Universes, Version, changes

RESOURCE_KEY = "universes"
SENSOR = "universe_versions"
UNIVERSE_TAG = "quant_assets/universe"
VERSION_TAG = "quant_assets/universe_version"
LOGGED = 20  # set-aside lines logged per tick


class UniverseFolder(dg.ConfigurableResource):
    """The named universes: one `<name>.txt` of symbols per universe in `folder` (edited by hand, read at every
    use), and their point-in-time versions under `<data>/reference/universes/`."""

    folder: str = Field(
        default=DEFAULT_UNIVERSES_DIR,
        description="Folder of the universe files, one <name>.txt per universe (QUANT_ASSETS_UNIVERSES).",
    )
    data: str = Field(
        default=DEFAULT_DATA, description="Data folder; versions are recorded under <data>/reference/universes/."
    )

    def universes(self) -> Universes:
        return Universes(self.folder, self.data)

    def record(self) -> Recorded:
        """Record a new version of every universe whose file changed."""
        return self.universes().record()

    def resolve(self, name: str) -> Version:
        """The current version of universe `name`, after recording the folder (an edit counts from now on);
        `UniverseError` naming the universe and its file when it has neither a file nor a recorded version."""
        universes = self.universes()
        universes.record()
        version = universes.current(name)
        if version is None:
            raise UniverseError(f"universe {name}: no {universes.folder / name}.txt and no recorded version")
        return version


def universe_metadata(version: Version) -> dict[str, dg.MetadataValue]:
    """What an asset reports about the universe version it used."""
    return {
        "universe": dg.MetadataValue.text(version.universe),
        "universe_version": dg.MetadataValue.text(version.version),
        "universe_as_of": dg.MetadataValue.text(version.as_of.isoformat(timespec="seconds")),
        "universe_members": dg.MetadataValue.int(len(version.members)),
    }


def tag_run(context: dg.AssetExecutionContext | dg.OpExecutionContext, version: Version) -> dict:
    """Tag the current run with the universe and version it uses (a run that uses several keeps the last) and
    return `universe_metadata`."""
    context.instance.add_run_tags(context.run_id, {UNIVERSE_TAG: version.universe, VERSION_TAG: version.version})
    return universe_metadata(version)


def universe_for_run(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, universes: UniverseFolder, name: str
) -> tuple[Version, dict[str, dg.MetadataValue]]:
    """The current version of universe `name` (`UniverseFolder.resolve`), with the run tagged (`tag_run`) and the
    metadata to report: the one call an asset makes to use a universe."""
    version = universes.resolve(name)
    return version, tag_run(context, version)


def build_universe_sensor(running: bool = True) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        description="Records a new version of each universe file (data/universes/<name>.txt) that changed, and "
        "reports it in the tick's log; launches no run. Runs resolve their universe themselves, so this keeps the "
        "history exact between runs.",
    )
    def universe_versions(context: dg.SensorEvaluationContext, universes: UniverseFolder):
        store = universes.universes()
        recorded = store.record()
        if not recorded.new:
            known, aside = len(recorded.folder.universes), recorded.folder.set_aside
            also = f"; {len(aside)} files set aside, the first: {aside[0]}" if aside else ""
            return dg.SkipReason(f"no universe changed ({known} universe files in {store.folder}{also})")
        for line in recorded.folder.set_aside[:LOGGED]:
            context.log.warning(line)
        for version in recorded.new:
            history = store.history(version.universe)
            change = changes(history[-2] if len(history) > 1 else None, version)
            context.log.info(
                f"universe {version.universe}: version {version.version} as of {version.as_of:%Y-%m-%d %H:%M:%S} "
                f"UTC, {len(version.members)} members, +{len(change.added)} -{len(change.removed)}"
            )
            for line in version.set_aside[:LOGGED]:
                context.log.warning(line)
        current = {name: v.version for name in recorded.folder.universes if (v := store.current(name))}
        return dg.SensorResult(run_requests=[], cursor=json.dumps(current, sort_keys=True))

    return universe_versions


def universes_defs(settings: Settings) -> dg.Definitions:
    """The `universes` resource (the settings' folder and data folder) and the `universe_versions` sensor."""
    return dg.Definitions(
        sensors=[build_universe_sensor(settings.sensors_running)],
        resources={RESOURCE_KEY: UniverseFolder(folder=settings.universes_dir, data=settings.data)},
    )


def write_qlib_universes(
    context: dg.AssetExecutionContext, universes: UniverseFolder, target: QlibDirectory
) -> dict[str, dg.MetadataValue]:
    """Record the folder, then write `instruments/<name>.txt` of every recorded universe into the day directory
    `target` (`qlib.directory.write_universe_instruments`); a universe that cannot be read is logged and skipped,
    never failing the directory's run. Returns the metadata `universe_instruments`: the files written."""
    store = universes.universes()
    store.record()
    written = []
    if target.calendar_length():
        for name in store.names():
            try:
                path = write_universe_instruments(target, name, store.day_spans(name))
            except (ValueError, OSError) as error:  # a version file edited by hand, a folder in the way
                context.log.error(f"universe {name}: its Qlib instruments were not written: {error}")
                continue
            written.append(str(path))
    return {"universe_instruments": dg.MetadataValue.json(written)}
