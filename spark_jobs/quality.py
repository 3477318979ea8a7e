"""Great Expectations suites on Spark DataFrames: cleaned events, built samples, scoring requests.

Each suite runs through a Checkpoint that writes its result JSON and Data Docs HTML under
`OUT/validation/`. Checks GX cannot express on Spark arrays (list lengths, element ranges) are row
checks: Spark SQL conditions run as `UnexpectedRowsExpectation`s. GX caches the frame it validates and
makes a pass over it per metric (about 40 for the samples), so a frame with lists is first narrowed to
its scalar columns and one flag per row check: the lists are read once, in the pass that fills the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dien_batch import schema
from dien_batch.io import write_json


@dataclass(frozen=True)
class VocabSizes:
    users: int
    items: int
    categories: int
    fields: tuple = ()  # (feature_spec.Field, its vocabulary's rows or None for a numeric field)


@dataclass(frozen=True)
class Suite:
    """Expectations on columns and the table, and row checks: description -> a Spark SQL condition
    that holds on a bad row."""

    expectations: list
    row_checks: dict[str, str]


@dataclass
class SuiteOutcome:
    name: str
    success: bool
    rows: int
    failures: list[dict]

    def message(self) -> str:
        return "; ".join(f"{f['expectation']}({f['target']}): {f['observed']}" for f in self.failures)


def _gxe():
    import great_expectations.expectations as gxe

    return gxe


def _rows(description: str, where: str):
    return _gxe().UnexpectedRowsExpectation(
        unexpected_rows_query=f"SELECT * FROM {{batch}} WHERE {where}", description=description)


def _checked(df, suite: Suite):
    """(the frame GX validates, its expectations): df itself when it has no list or map columns, else
    df's scalar columns and a boolean `_fails_<i>` per row check, which its row expectation selects on."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType

    scalars = [f.name for f in df.schema.fields if not isinstance(f.dataType, (ArrayType, MapType))]
    if len(scalars) == len(df.columns):
        return df, [*suite.expectations, *(_rows(d, where) for d, where in suite.row_checks.items())]
    flags = {f"_fails_{i}": where for i, where in enumerate(suite.row_checks.values())}
    narrow = df.select(*scalars, *(F.expr(where).alias(flag) for flag, where in flags.items()))
    return narrow, [*suite.expectations, *(_rows(d, flag) for d, flag in zip(suite.row_checks, flags, strict=True))]


def events_suite(ts_range: tuple[int, int]) -> Suite:
    """The cleaned events (after quarantine; duplicates are folded and counted in the next step)."""
    gxe = _gxe()
    out = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    for column in ("user", "item", "category", "ts"):
        out += [gxe.ExpectColumnToExist(column=column), gxe.ExpectColumnValuesToNotBeNull(column=column)]
    out.append(gxe.ExpectColumnValuesToBeBetween(column="ts", min_value=ts_range[0], max_value=ts_range[1] - 1))
    return Suite(out, {"ids are not empty": "trim(user) = '' OR trim(item) = '' OR trim(category) = ''"})


def _in_vocab(column: str, size: int) -> str:
    return f"exists({column}, x -> x IS NULL OR x < 1 OR x >= {size})"


def _with_fields(suite: Suite, v: VocabSizes, lists: tuple[str, ...], parallel_to: str) -> Suite:
    """suite plus the feature spec's columns: scalar ids within their vocabularies (0 = missing), and each
    item field's lists (`lists`: hist_, neg_, cand_) as long as `parallel_to`, their ids within range."""
    gxe = _gxe()
    out, rows = list(suite.expectations), dict(suite.row_checks)
    for f, size in v.fields:
        scalar = f.group != "item" or "cand_" not in lists
        if scalar:
            out.append(gxe.ExpectColumnToExist(column=f.column))
        if scalar and f.kind == "categorical":
            out += [gxe.ExpectColumnValuesToNotBeNull(column=f.column),
                    gxe.ExpectColumnValuesToBeBetween(column=f.column, min_value=0, max_value=size - 1)]
        if f.group != "item":
            continue
        for role in lists:
            column = role + f.column
            size_of = "hist_len" if role != "cand_" else f"size({parallel_to})"
            bad = f"size({column}) != {size_of}"
            if f.kind == "categorical":
                bad += f" OR exists({column}, x -> x IS NULL OR x < 0 OR x >= {size})"
            rows[f"field {f.key}: {column} parallel to the items, ids within its vocabulary"] = bad
    return Suite(out, rows)


def samples_suite(v: VocabSizes, max_len: int, positive_rate: tuple[float, float]) -> Suite:
    gxe = _gxe()
    out = [gxe.ExpectTableRowCountToBeBetween(min_value=1),
           gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
           gxe.ExpectColumnValuesToNotBeNull(column="label"),
           gxe.ExpectColumnMeanToBeBetween(column="label", min_value=positive_rate[0], max_value=positive_rate[1]),
           gxe.ExpectColumnValuesToBeBetween(column="hist_len", min_value=0, max_value=max_len),
           gxe.ExpectColumnValuesToBeBetween(column="user_idx", min_value=1, max_value=v.users - 1),
           gxe.ExpectColumnValuesToBeBetween(column="item_idx", min_value=1, max_value=v.items - 1),
           gxe.ExpectColumnValuesToBeBetween(column="category_idx", min_value=1, max_value=v.categories - 1)]
    return _with_fields(Suite(out, {
        "sequence lists have hist_len elements":
            "size(hist_item_idx) != hist_len OR size(hist_category_idx) != hist_len "
            "OR size(neg_item_idx) != hist_len OR size(neg_category_idx) != hist_len",
        "history ids within the vocabulary":
            f"{_in_vocab('hist_item_idx', v.items)} OR {_in_vocab('neg_item_idx', v.items)} "
            f"OR {_in_vocab('hist_category_idx', v.categories)} OR {_in_vocab('neg_category_idx', v.categories)}",
        "aux negatives never equal the clicked item":
            "exists(zip_with(hist_item_idx, neg_item_idx, (a, b) -> a = b), x -> x)",
        "history strictly before the target (point in time)":
            "hist_len > 0 AND (hist_last_ts IS NULL OR hist_last_ts >= ts)",
    }), v, schema.SAMPLE_ROLES[1:], "hist_item_idx")


def requests_suite(v: VocabSizes, max_len: int) -> Suite:
    gxe = _gxe()
    return _with_fields(Suite([
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="request_id"),
        gxe.ExpectColumnValuesToBeBetween(column="hist_len", min_value=0, max_value=max_len),
    ], {
        "candidate lists are parallel and non-empty":
            "size(cand_item_idx) = 0 OR size(cand_item_idx) != size(cand_category_idx) "
            "OR size(cand_item_idx) != size(cand_item_id) "
            "OR (cand_label IS NOT NULL AND size(cand_label) != size(cand_item_idx))",
        "history lists have hist_len elements":
            "size(hist_item_idx) != hist_len OR size(hist_category_idx) != hist_len",
        "ids within the vocabulary":
            f"{_in_vocab('hist_item_idx', v.items)} OR {_in_vocab('cand_item_idx', v.items)} "
            f"OR {_in_vocab('cand_category_idx', v.categories)}",
        "history strictly before the request (point in time)":
            "hist_len > 0 AND (hist_last_ts IS NULL OR hist_last_ts >= ts)",
    }), v, schema.REQUEST_ROLES, "cand_item_idx")


class Validator:
    """One ephemeral GX context writing results JSON and Data Docs into a directory."""

    def __init__(self, out_dir: Path):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.add_data_docs_site(site_name="local", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(self.out_dir / "data_docs")},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        self.source = self.context.data_sources.add_spark(name="spark")
        self.outcomes: list[SuiteOutcome] = []

    def run(self, name: str, df, checks: Suite) -> SuiteOutcome:
        from great_expectations.checkpoint import UpdateDataDocsAction

        gx = self.gx
        df, expectations = _checked(df, checks)
        batch = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(name)
        suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=name, validation_definitions=[definition], actions=[UpdateDataDocsAction(name="docs")],
            result_format={"result_format": "SUMMARY"}))
        try:
            result = checkpoint.run(batch_parameters={"dataframe": df})
        finally:
            # GX persists the batch; Spark would serve that cache to a later read of the same files
            # even after they changed, so drop it.
            df.sparkSession.catalog.clearCache()
        suite_result = next(iter(result.run_results.values()))
        write_json(self.out_dir / f"{name}.json", suite_result.to_json_dict())
        failures, rows = [], 0
        for r in suite_result.results:
            kwargs = r.expectation_config.kwargs
            if r.expectation_config.type == "expect_table_row_count_to_be_between":
                rows = r.result.get("observed_value") or 0
            if not r.success:
                target = kwargs.get("column") or kwargs.get("column_list") or r.expectation_config.description
                observed = r.result.get("unexpected_count", r.result.get("observed_value"))
                if r.exception_info and r.exception_info.get("raised_exception"):
                    observed = r.exception_info.get("exception_message")
                failures.append({"expectation": r.expectation_config.type, "target": str(target),
                                 "observed": observed})
        outcome = SuiteOutcome(name, bool(suite_result.success), int(rows), failures)
        self.outcomes.append(outcome)
        return outcome

    def summary(self) -> dict:
        return {o.name: {"success": o.success, "rows": o.rows, "failures": o.failures} for o in self.outcomes}
