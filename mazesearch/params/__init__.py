"""The one schema for params.yaml, and how stages load it.

Stages call :func:`load_params_or_exit`; library code never reads params.yaml. Any unknown key,
wrong type or impossible value stops the stage with one message naming the key (exit code 2)
before anything is written.

    schema.py    one pydantic model per section; every default lives here only
    load.py      parse / load, ParamsError (one line), require_section, suite_tokenizer
    explicit.py  every key written out: missing_keys, schema_defaults, fill_defaults
    __main__.py  python -m mazesearch.params --check params.yaml   # list keys left to a default, exit 2 if any
                 python -m mazesearch.params --fill params.yaml    # write their defaults in (keeps comments)
"""

from mazesearch.params.explicit import fill_defaults, missing_keys, schema_defaults
from mazesearch.params.load import (
    ParamsError, load_params, load_params_or_exit, parse_params, require_section, suite_tokenizer)
from mazesearch.params.schema import (
    GENERATORS, DatasetSpec, TokenizerSpec, TokenizerOverride, ModelSpec, TrainSpec, SuiteSpec, EvaluateSpec,
    ActivationsSpec, ProbesSpec, DynamicsSpec, HeadsSpec, GeometrySpec, ModelRunSpec, LogitLensSpec,
    DlaSpec, CounterfactualsSpec, PatchingSpec, SteeringSpec, FaithfulnessSpec, ReportSpec, ReachSpec,
    ClustersSpec, ParallelSpec, Params)

__all__ = ["GENERATORS", "DatasetSpec", "TokenizerSpec", "TokenizerOverride", "ModelSpec", "TrainSpec",
    "SuiteSpec", "EvaluateSpec", "ActivationsSpec", "ProbesSpec", "DynamicsSpec", "HeadsSpec",
    "GeometrySpec", "ModelRunSpec", "LogitLensSpec", "DlaSpec", "CounterfactualsSpec", "PatchingSpec",
    "SteeringSpec", "FaithfulnessSpec", "ReportSpec", "ReachSpec", "ClustersSpec", "ParallelSpec", "Params", "ParamsError",
    "parse_params", "load_params", "load_params_or_exit", "require_section", "suite_tokenizer",
    "missing_keys", "schema_defaults", "fill_defaults"]
