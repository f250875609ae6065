"""The Great Expectations side of validation: the suites, their checkpoint runs, verdicts and
Data Docs. Each expectation carries the reason a failing row is given, in order of precedence.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wastesort import images


def file_expectations(max_pixels: int, min_side: int, exclude_near_conflicts: bool = False) -> list:
    import great_expectations as gx

    E = gx.expectations
    near_conflicts = [
        E.ExpectColumnValuesToBeInSet(
            column="near_conflict",
            value_set=[False],
            meta={
                "reason": "possible label conflict: near-duplicate of {near_conflict_with} in "
                "another class; excluded (validate.exclude_near_duplicate_conflicts)"
            },
        )
    ]
    return [
        E.ExpectColumnValuesToBeBetween(
            column="bytes", min_value=1, meta={"reason": "empty file (0 bytes)"}
        ),
        E.ExpectColumnValuesToBeInSet(
            column="format",
            value_set=sorted(images.SUPPORTED_FORMATS),
            meta={"reason": "{decode_error}"},
        ),
        E.ExpectColumnValuesToBeBetween(
            column="pixels", min_value=0, max_value=max_pixels, meta={"reason": "{decode_error}"}
        ),
        E.ExpectColumnValuesToBeInSet(
            column="decodes", value_set=[True], meta={"reason": "{decode_error}"}
        ),
        E.ExpectColumnValuesToBeInSet(
            column="rgb_ok", value_set=[True], meta={"reason": "{decode_error}"}
        ),
        E.ExpectColumnValuesToBeBetween(
            column="short_side",
            min_value=min_side,
            meta={"reason": "too small: {width}x{height}, smallest side under %d px" % min_side},
        ),
        E.ExpectColumnValuesToBeInSet(
            column="label_conflict",
            value_set=[False],
            meta={
                "reason": "label conflict: byte-identical copies filed as {conflict_classes}; "
                "all copies excluded"
            },
        ),
        E.ExpectColumnValuesToBeInSet(
            column="duplicate_of",
            value_set=[""],
            meta={
                "reason": "duplicate: byte-identical to {duplicate_of} in the same class "
                "(that copy kept)"
            },
        ),
    ] + (near_conflicts if exclude_near_conflicts else [])


def class_expectations(min_images: int) -> list:
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectTableRowCountToBeBetween(min_value=2, meta={"reason": "fewer than 2 classes"}),
        E.ExpectColumnValuesToBeInSet(
            column="folder_exists",
            value_set=[True],
            meta={"reason": "class folder {label}/ not found"},
        ),
        E.ExpectColumnValuesToBeBetween(
            column="accepted",
            min_value=min_images,
            meta={
                "reason": "class {label} has {accepted} usable images, needs at least %d"
                % min_images
            },
        ),
    ]


@dataclass
class SuiteRun:
    success: bool
    failures: dict[str, list[dict[str, Any]]]  # suite name -> failing expectations
    result: dict[str, Any]  # GE's own validation result, JSON-ready


def gx_context(workdir: Path):
    """A throwaway file-backed GE project, so Data Docs can be built and copied out."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="file", project_root_dir=str(workdir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # ours is enough
    return context


def run_suites(context, tables: dict[str, tuple[pd.DataFrame, list]], key: str) -> SuiteRun:
    """Validate each table with its suite through a GE checkpoint that updates Data Docs."""
    import great_expectations as gx

    definitions, frames = [], {}
    for name, (frame, expectations) in tables.items():
        source = context.data_sources.add_pandas(f"{name}_source")
        asset = source.add_dataframe_asset(name=name)
        batch = asset.add_batch_definition_whole_dataframe(f"{name}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
        )
        frames[name] = frame
    results, failures, success = {}, {}, True
    for definition in definitions:
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{definition.name}_checkpoint",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [key]
                    if key in frames[definition.name]
                    else [],
                },
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frames[definition.name]})
        success &= bool(run.success)
        for validation in run.run_results.values():
            results[definition.name] = validation.to_json_dict()
            failures[definition.name] = [
                {
                    "reason": r.expectation_config.meta.get("reason", r.expectation_config.type),
                    "rows": [
                        row[key]
                        for row in (r.result.get("unexpected_index_list") or [])
                        if isinstance(row, dict) and key in row
                    ],
                }
                for r in validation.results
                if not r.success
            ]
    return SuiteRun(success, failures, results)


def verdicts(facts: pd.DataFrame, failures: list[dict[str, Any]]) -> pd.Series:
    """First failing expectation per file, its reason filled from the file's facts."""
    reason = pd.Series("", index=facts.index, dtype=object)
    by_path = {p: i for i, p in zip(facts.index, facts["path"])}
    for failure in failures:
        for path in failure["rows"]:
            idx = by_path[path]
            if not reason[idx]:
                reason[idx] = failure["reason"].format(**facts.loc[idx].to_dict())
    return reason


def write_docs(gx_root: Path, docs_dir: Path, results: dict[str, Any]) -> None:
    if docs_dir.exists():
        shutil.rmtree(docs_dir)
    site = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site"
    shutil.copytree(site, docs_dir / "data_docs")
    (docs_dir / "ge_validation_result.json").write_text(
        json.dumps(results, indent=2, sort_keys=True, default=str)
    )
