"""What the Datasets screen says about a checked file: the info line (format, bad
records, split sizes, keys not read, token lengths) and the load-errors panel. Plain
strings built from the scan (no widget), so the screen module holds the loading, the
keys and the layout."""

from __future__ import annotations

from ...data.dataset import Dataset, ScanResult
from ...data.split import split_records
from ...data.stats import length_stats
from ...text import visible

MAX_ERRORS_LISTED = 500
IGNORED_KEYS_SHOWN = 4


def info_line(dataset: Dataset, scan: ScanResult | None, lengths: list[int], *, seed: int,
              ratios: tuple[float, ...], split_method: str, max_length: int,
              counted_to: int = 0) -> str:
    """The line under the panes; `scan` is None while the records are checked, and
    `lengths` empty while their tokens are counted (those above `counted_to` were
    counted no further)."""
    parts = [f"{dataset.format} \u00b7 {len(dataset):,} entries"]
    if scan is None:
        parts.append("checking records ...")
    else:
        splits = split_records(scan.records, seed=seed, ratios=ratios, method=split_method)
        sizes = splits.sizes()
        parts.append(f"{len(scan.errors):,} bad")
        parts.append(f"{split_method} split: train {sizes['train']:,} / "
                     f"val {sizes['val']:,} / test {sizes['test']:,}")
        ignored = list(scan.ignored_keys)
        if ignored:
            keys = ", ".join(visible(k, keep_newlines=False)
                             for k in ignored[:IGNORED_KEYS_SHOWN])
            more = f" +{len(ignored) - IGNORED_KEYS_SHOWN}" if len(ignored) > \
                IGNORED_KEYS_SHOWN else ""
            parts.append(f"keys not read: {keys}{more}")
        stats = length_stats(lengths)
        if not stats:
            parts.append("counting tokens ...")
        else:
            truncated = sum(1 for n in lengths if n > max_length)

            def shown(n: float) -> str:
                if counted_to and n > counted_to:
                    return f">{counted_to:,}"
                return f"{n:g}" if isinstance(n, float) else str(n)

            parts.append(f"tokens min {shown(stats.min)} \u00b7 median {shown(stats.median)}"
                         f" \u00b7 p95 {shown(stats.p95)} \u00b7 max {shown(stats.max)} "
                         f"\u00b7 {truncated} over {max_length}")
    return "  \u2502  ".join(parts)


def error_lines(scan: ScanResult) -> str:
    """The load-errors panel: every bad record (up to MAX_ERRORS_LISTED) and the keys
    no record is read from, with how to read one."""
    errors = scan.errors
    lines = [visible(str(e), keep_newlines=False) for e in errors[:MAX_ERRORS_LISTED]]
    if len(errors) > MAX_ERRORS_LISTED:
        lines.append(f"... and {len(errors) - MAX_ERRORS_LISTED:,} more "
                     "(tui-ft data inspect --json lists all)")
    if not errors:
        lines.append("no bad records")
    ignored = scan.ignored_keys
    if ignored:
        lines.append("")
        lines.append("keys not read (records holding each): " + ", ".join(
            f"{visible(k, keep_newlines=False)} ({n:,})" for k, n in ignored.items()))
        lines.append("To read one, name it as instruction_key, input_key or "
                     "output_key (Params, 2).")
    return "\n".join(lines)
