"""pandera schemas (polars backend) for the lake, generated from the registry and the row rules: the published
contract of a lake table, for validating a lake file on its own (`lake_schema(dataset, session).validate(frame)`).
The ingest's gate evaluates the same rules directly, in one polars pass per batch, which is several times cheaper
than pandera's failure-case machinery on millions of rows."""

import datetime as dt

import pandera.polars as pa

from quant_assets.datasets import Dataset
from quant_assets.quality.rules import rules_for


def lake_schema(dataset: Dataset, session: dt.date) -> pa.DataFrameSchema:
    """Column names and types of `dataset`'s lake table, plus one dataframe-level check per row rule.

    Checks run over the whole frame (one vectorised pass each); failure cases carry the row index and the rule's
    reason, so they name the same rows, for the same reasons, as the gate's quarantine.
    """
    return pa.DataFrameSchema(
        {name: pa.Column(dtype, nullable=True) for name, dtype in dataset.lake_schema().items()},
        checks=[
            pa.Check(lambda data, rule=rule: rule.evaluate(data.lazyframe), name=rule.name, error=rule.reason)
            for rule in rules_for(dataset, session)
        ],
        strict=True,
        name=f"lake_{dataset.name}",
    )
