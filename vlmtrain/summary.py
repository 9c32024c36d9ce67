"""The short end-of-run report: final metrics, where the checkpoint and logs are."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_summary(
    metrics: dict[str, float],
    checkpoints: dict[str, str],
    hf_model: str | None,
    output_dir: str,
    loggers: list[Any],
    samples: list[dict[str, Any]],
    skipped: int = 0,
) -> None:
    """Print a compact summary table to the terminal (rank 0 only).

    Args:
        checkpoints: ``{"last": path, "best": path}`` (either may be missing).
    """
    console = Console(stderr=False)
    table = Table(title="vlmtrain: run finished", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4f}")
    table.add_row("output dir", output_dir)
    for name in ("last", "best"):
        table.add_row(f"{name} checkpoint", checkpoints.get(name, "-"))
    table.add_row("hf model", hf_model or "-")
    for logger in loggers:
        table.add_row(f"logs ({type(logger).__name__})", _logger_location(logger))
    if skipped:
        table.add_row("skipped samples", str(skipped))
    console.print(table)
    for row in samples[:4]:
        console.print(f"  [dim]{row['prompt']}[/dim] -> {row['prediction']!r} "
                      f"(refs: {row['references'][:60]})")


def _logger_location(logger: Any) -> str:
    exp = getattr(logger, "experiment", None)
    url = getattr(exp, "url", None)
    if url:
        return str(url)
    run_dir = getattr(exp, "dir", None)
    if run_dir and isinstance(run_dir, str):
        return run_dir
    return str(getattr(logger, "log_dir", None) or getattr(logger, "save_dir", "-"))
