"""flowsight: business-SLO monitoring for retail workflows.

The core package: settings, configuration loading, the workflow and topology model, the
ClickHouse store and migrations, the app factory and the CLI. The domain packages
(:mod:`flowsight.collector`, :mod:`flowsight.slo`, :mod:`flowsight.alerts`,
:mod:`flowsight.dashboards`) build on it.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
