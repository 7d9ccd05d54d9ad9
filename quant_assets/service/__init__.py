"""The market-data service's datasets (quotes, news, fundamentals, earnings, vendor indicators): what a job of one
provider x data type x scope fetches and how it lands. Pure: no Dagster here (`defs/service.py` wires it)."""
