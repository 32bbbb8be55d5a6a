"""`evaluate`: measure a ProM3E model on paired embeddings, as one Markdown or HTML report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from prom3e_geo.engine.pipeline import PRESETS
from prom3e_geo.errors import InputError
from prom3e_geo.evaluate.figures import report_figures
from prom3e_geo.evaluate.markdown import markdown_to_html, report_markdown
from prom3e_geo.evaluate.measure import EVALUATION_DATA, Evaluation, EvaluationSet, evaluate
from prom3e_geo.io.outputs import atomic_output, check_output, committed_together
from prom3e_geo.model.prom3e import ProM3E
from prom3e_geo.recipes import EvaluationRecipe, load_evaluation_recipe
from prom3e_geo.train.data import load_embeddings


def evaluation(recipe_path: Path | None, out: Path, *, overwrite: bool = False) -> Evaluation:
    """Run the recipe's measurements (default: the demo model on new demo-world observations)
    and write the report to `out` (figures in `<name>_files/` beside it)."""
    check_output(out, overwrite)
    if out.suffix.lower() not in (".md", ".html", ".htm"):
        raise InputError(f"report {out}: use a .md or .html name")
    recipe = load_evaluation_recipe(recipe_path)
    if recipe.save_calibration:
        check_output(recipe.save_calibration, overwrite)
    model, data, sha256 = load_evaluation(recipe)
    result = evaluate(model, data, recipe)
    if recipe.save_calibration:
        if result.calibration is None:
            raise InputError("save_calibration needs the image and two context modalities")
        with atomic_output(recipe.save_calibration, overwrite) as tmp:
            result.calibration.save(tmp, model_sha256=sha256)
    write_report(result, data, Path(out), overwrite)
    return result


def write_report(result: Evaluation, data: EvaluationSet, out: Path, overwrite: bool) -> None:
    """The report (HTML when the name ends in .html or .htm, else Markdown) and its figures in
    `<name>_files/` beside it, all written through the atomic writers and committed together."""
    folder = out.with_name(f"{out.stem}_files")
    folder.mkdir(exist_ok=True)
    figures = report_figures(result, data)
    with committed_together():
        for figure in figures:
            with atomic_output(folder / figure.name, overwrite=True) as tmp:
                figure.figure.savefig(tmp, dpi=110, format="png")
        links = {figure.caption: f"{folder.name}/{figure.name}" for figure in figures}
        markdown = report_markdown(result, data, links)
        if out.suffix.lower() in (".html", ".htm"):
            markdown = markdown_to_html(markdown, f"ProM3E evaluation: {data.name}")
        with atomic_output(out, overwrite) as tmp:
            tmp.write_text(markdown)


def load_evaluation(recipe: EvaluationRecipe) -> tuple[ProM3E, EvaluationSet, str]:
    """The model (a preset or weights), the data (a registered dataset or files) a recipe
    names, and the model's weights hash."""
    if recipe.model in PRESETS:
        parts = PRESETS.get(recipe.model)("cpu")
        model, sha256 = parts.model, parts.weights_sha256
    else:
        from prom3e_geo.model.checkpoint import load_prom3e

        loaded = load_prom3e(recipe.model, "cpu")
        model, sha256 = loaded.model, loaded.sha256
    if recipe.data in EVALUATION_DATA:
        data = EVALUATION_DATA.get(recipe.data)(n=recipe.n)
    else:
        data = file_evaluation_set(recipe)
    if data.values.shape[-1] != model.config.input_dim:
        raise InputError(
            f"the data's embeddings are {data.values.shape[-1]}-d; the model expects "
            f"{model.config.input_dim}"
        )
    return model.float().eval(), data, sha256


def file_evaluation_set(recipe: EvaluationRecipe) -> EvaluationSet:
    data = load_embeddings(recipe.data)
    n = len(data)
    labels = None if recipe.labels is None else _read_column(recipe.labels, n)
    if labels is not None:
        labels = np.unique(labels, return_inverse=True)[1]
    targets = {k: _read_column(v, n).astype(float) for k, v in recipe.targets.items()}
    return EvaluationSet(
        torch.from_numpy(data.values), data.present, f"{data.name}, {n:,} samples", labels, targets
    )


def _read_column(path: str, n: int) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist")
    try:
        if p.suffix == ".npy":
            values = np.load(p, allow_pickle=False)
        else:
            values = np.loadtxt(p, dtype=str, delimiter=",", ndmin=1)
    except ValueError as exc:
        raise InputError(f"{p} cannot be read as one column: {exc}") from None
    values = np.ravel(values)
    if values.size != n:
        raise InputError(f"{p} has {values.size} values for {n} samples")
    if values.dtype.kind in "US":
        try:
            return values.astype(float)
        except ValueError:
            return values
    return values
