"""`embed`, `sdm`, `uncertainty` and `ica`: per-cell embeddings and the maps made from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prom3e_geo_cli.options import (
    STORE_FIXED,
    command_line,
    grid_options,
    map_inputs,
    output_options,
    output_spec,
    pipeline_options,
)
from prom3e_geo_cli.progress import CellProgress

embeddings_option = click.option(
    "--embeddings",
    default=None,
    help="Reuse an embedding store: a path, s3://, gs://, az://, https:// or "
    "hf-hub:datasets/ORG/NAME[@REV]/PATH.zarr.",
)


def echo_result(
    summaries: dict[str, tuple[float, float, float]], written: list[Path | str], number: str = ".3f"
) -> None:
    """Each band's range and mean (numbers formatted as `number`), then the files written."""
    for name, (lo, mean, hi) in summaries.items():
        click.echo(f"{name}: min {lo:{number}}, mean {mean:{number}}, max {hi:{number}}")
    for path in written:
        click.echo(f"wrote {path}")


@click.command("embed")
@pipeline_options
@grid_options
@click.option(
    "--out", required=True, help="Embedding store (.zarr): a path, s3://, gs:// or az://."
)
def embed_command(out: str, **o: Any) -> None:
    """Run the encoders and ProM3E over every grid cell into an embedding store.

    Re-running resumes an interrupted store; a store made by another pipeline is refused.

    \b
    Example:
      prom3e-geo embed --context sat,loc,env --out cube.zarr
    """
    from prom3e_geo.workflows.maps import embed

    inputs = map_inputs(o)
    with CellProgress() as progress:
        summary = embed(inputs.pipeline, inputs.grid, out, run=inputs.run, progress=progress)
    s = summary
    click.echo(
        f"embed: {s.chunks_computed} chunk(s) computed ({s.chunks_retried} with failed cells "
        f"retried), {s.chunks_done_before} already done, {s.chunks_total} in all; "
        f"{s.cells_valid:,} cells valid, {s.cells_invalid:,} without all inputs; {s.seconds:.1f} s"
    )
    click.echo(
        f"store: {s.cells_valid_in_store:,} cells valid, {s.cells_invalid_in_store:,} without all "
        "inputs" + (" (re-run to retry them)" if s.cells_invalid_in_store else "")
    )
    click.echo(f"wrote {out}")


@click.command("sdm")
@click.option(
    "--query",
    "queries",
    required=True,
    multiple=True,
    help="A photo (repeat for more), or a species name when the model has a text tower.",
)
@embeddings_option
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "recon"]),
    default="hybrid",
    show_default=True,
    help="hybrid: against the cells' own context embeddings (measured best, docs/evaluation.md); "
    "recon: against the cells' reconstructed photo embedding (the paper's Fig. 4).",
)
@click.option("--delta", default=0.5, show_default=True, type=float, help="Hybrid mixing weight.")
@click.option(
    "--target",
    default=None,
    type=click.Choice(["sat", "loc", "env"]),
    help="Hybrid target modality (default: env if the store has it, else loc, else sat).",
)
@click.option(
    "--rescale", "rescale", is_flag=True, help="Rescale each band linearly to 0-1 over the AOI."
)
@click.option("--threshold", type=float, default=None, help="Add a presence band: similarity >= T.")
@output_options
@pipeline_options
@grid_options
def sdm_command(
    queries: tuple[str, ...],
    embeddings: str | None,
    mode: str,
    delta: float,
    target: str | None,
    rescale: bool,
    threshold: float | None,
    **o: Any,
) -> None:
    """Species-distribution similarity map for query photos (one band per query).

    \b
    Example:
      prom3e-geo sdm --query examples/cardinal.jpg --out map.tif --png map.png
    """
    from prom3e_geo.workflows.maps import SdmSpec, sdm

    spec = SdmSpec(tuple(queries), mode, delta, target, rescale, threshold)
    output, inputs = output_spec(o), map_inputs(o, embeddings)
    with CellProgress() as progress:
        result = sdm(spec, inputs, output, progress=progress, command=command_line())
    echo_result(result.layers.summaries(), result.written)


@click.command("uncertainty")
@embeddings_option
@click.option(
    "--store-context",
    default="sat,loc,env",
    show_default=True,
    help="Context of the store built when --embeddings is not given (--context: any subset of it).",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    default=None,
    help="An error calibration of the store's model (evaluate's save_calibration): adds the "
    "expected_error band to sigma_l1; for expected_error and trust, replaces the model's own.",
)
@click.option(
    "--layer",
    type=click.Choice(["sigma_l1", "expected_error", "novelty", "trust"]),
    default="sigma_l1",
    show_default=True,
    help="sigma_l1: the paper's ||sigma||_1; expected_error: the calibrated reconstruction "
    "error; novelty: how unlike the training data each cell's context is (0-1); trust: where "
    "to distrust the species map (0-1, high: distrust).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="A novelty reference (prom3e-geo weights reference) instead of the model's own, for "
    "novelty and trust.",
)
@output_options
@pipeline_options
@grid_options
def uncertainty_command(
    embeddings: str | None,
    store_context: str,
    calibration: Path | None,
    layer: str,
    reference: Path | None,
    **o: Any,
) -> None:
    """An uncertainty layer per cell for the chosen --context: the paper's ||sigma||_1 map, the
    calibrated expected error, novelty, or trust.

    The sigma of any subset of a store's context comes from its stored embeddings, so the
    uncertainty of location alone reuses the store that `sdm` built.

    \b
    Examples:
      prom3e-geo uncertainty --context loc --out sigma.tif --png sigma.png
      prom3e-geo uncertainty --layer novelty --aoi 0,40,20,55 --out eu.tif
    """
    from prom3e_geo.engine.spec import parse_context
    from prom3e_geo.workflows.maps import UncertaintySpec, uncertainty

    spec = UncertaintySpec(tuple(parse_context(o.pop("context"))), layer, calibration, reference)
    fixed = tuple(name for name in STORE_FIXED if name != "context")  # --context: the subset
    output = output_spec(o)
    inputs = map_inputs({**o, "context": store_context}, embeddings, fixed)
    with CellProgress() as progress:
        result = uncertainty(spec, inputs, output, progress=progress, command=command_line())
    echo_result(result.layers.summaries(), result.written, ".4g")


@click.command("ica")
@click.option(
    "--embeddings",
    required=True,
    help="Embedding store (from embed, sdm or uncertainty): a path or a URL as for sdm.",
)
@click.option(
    "--token",
    default="mu",
    show_default=True,
    help="Per-cell embedding: mu, recon_image, ctx_sat, ctx_loc, ctx_env, or register:K "
    "(ProM3E's K-th register token, recomputed with the store's model).",
)
@click.option("--model", default=None, help="The store's model (default: read from the store).")
@click.option("--seed", default=0, show_default=True, type=int, help="FastICA seed.")
@click.option(
    "--max-iter",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="FastICA iterations; a fit that does not converge in them exits 1.",
)
@output_options
def ica_command(
    embeddings: str, token: str, model: str | None, seed: int, max_iter: int, **o: Any
) -> None:
    """Three independent components of a per-cell embedding as an RGB map (FastICA).

    \b
    Example:
      prom3e-geo ica --embeddings cube.zarr --token mu --out ica.tif --png ica.png
    """
    from prom3e_geo.engine.spec import PipelineSpec
    from prom3e_geo.workflows.maps import IcaSpec, MapInputs, ica

    inputs = MapInputs(embeddings, PipelineSpec(model=model))
    spec = IcaSpec(token, seed, max_iter)
    result = ica(spec, inputs, output_spec(o), command=command_line())
    echo_result({}, result.written)
