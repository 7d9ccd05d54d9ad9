"""pandera schemas (polars backend) for the lake, generated from the registry and the row rules."""

import datetime as dt

import pandera.polars as pa

from quant_assets.datasets import Dataset
from quant_assets.quality.rules import rules_for


def lake_schema(dataset: Dataset, session: dt.date) -> pa.DataFrameSchema:
    """Column names and types of `dataset`'s lake table, plus one dataframe-level check per row rule.

    Checks run over the whole frame (one vectorised pass each), so validating a day of minute bars costs tens of
    milliseconds; failure cases carry the row index, which the gate uses to quarantine rows.
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
