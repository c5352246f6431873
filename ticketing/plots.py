"""Plots of a rush (matplotlib, imported lazily: it is a notebook/test extra, not a server dependency)."""
from __future__ import annotations

from ticketing.rush import RushResult


def _cumulative(points: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    xs, ys, total = [0.0], [0], 0
    for t, n in sorted(points):
        total += n
        xs.append(t)
        ys.append(total)
    return xs, ys


def timeline(result: RushResult, ax, label: str = "") -> None:
    """Holds granted and seats sold over time as buyers saw them, and held/sold as watchers saw them."""
    prefix = f"{label} " if label else ""
    granted = [(c.start + c.latency, c.quantity) for c in result.calls if c.kind == "hold" and c.status == 201]
    sold = [(c.start + c.latency, c.quantity) for c in result.calls if c.kind == "order" and c.status == 201]
    ax.step(*_cumulative(granted), where="post", label=f"{prefix}seats held (cumulative)")
    ax.step(*_cumulative(sold), where="post", label=f"{prefix}seats sold (cumulative)")
    samples = sorted((s for s in result.samples if s.watcher == 0), key=lambda s: s.t)
    if samples:
        ax.plot([s.t for s in samples], [s.held for s in samples], ":", label=f"{prefix}held now (watcher)")
    ax.axhline(result.config.seats, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("seconds since the on-sale opened")
    ax.set_ylabel("seats")
    ax.legend(fontsize="small")


def latency(result: RushResult, ax, label: str = "") -> None:
    """Distribution of hold and order latencies (ms, log scale: the tail matters as much as the body)."""
    import numpy as np
    from matplotlib.ticker import NullFormatter

    prefix = f"{label} " if label else ""
    every = [x * 1000 for kind in ("hold", "order") for x in result.latencies(kind)]
    if not every:
        return
    bins = np.geomspace(max(min(every), 0.1), max(max(every), 0.2), 30)
    for kind in ("hold", "order"):
        values = [x * 1000 for x in result.latencies(kind)]
        if values:
            ax.hist(values, bins=bins, alpha=0.6, label=f"{prefix}{kind} ({len(values)})")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # major decades only: minor labels overlap
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.legend(fontsize="small")


def availability(result: RushResult, ax) -> None:
    """Available seats as each watcher saw them while polling the tickets endpoint."""
    for watcher in sorted({s.watcher for s in result.samples}):
        mine = sorted((s for s in result.samples if s.watcher == watcher), key=lambda s: s.t)
        ax.step([s.t for s in mine], [s.available for s in mine], where="post", label=f"watcher {watcher}")
    ax.set_xlabel("seconds since the on-sale opened")
    ax.set_ylabel("available seats")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


PERCENTILES = (50, 90, 99)


def latency_percentiles(results: dict[str, RushResult], ax, kinds: tuple[str, ...] = ("hold", "order")) -> None:
    """p50/p90/p99 of each kind of call, one group of bars per run (ms, log scale)."""
    from ticketing.rush import percentile_ms

    labels = [f"{kind} p{p}" for kind in kinds for p in PERCENTILES]
    width = 0.8 / max(1, len(results))
    for i, (name, result) in enumerate(results.items()):
        values = [percentile_ms(result.latencies(kind), p) or 0 for kind in kinds for p in PERCENTILES]
        bars = ax.bar([x + i * width for x in range(len(labels))], values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize="x-small")
    ax.set_xticks([x + (len(results) - 1) * width / 2 for x in range(len(labels))], labels)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize="small")


def sold_over_time(result: RushResult, ax, label: str = "") -> None:
    """Seats sold over time (buyers' confirmed orders), and when the last one went (sold out)."""
    points = result.sold_over_time()
    line = ax.step([0.0] + [t for t, _ in points], [0] + [n for _, n in points], where="post",
                   label=f"{label} seats sold".strip())[0]
    sold_out = result.sold_out_seconds()
    if sold_out is not None:
        ax.axvline(sold_out, color=line.get_color(), linewidth=0.8, linestyle=":")
        ax.annotate(f"sold out {sold_out:.0f} s", (sold_out, result.config.seats), fontsize="x-small",
                    color=line.get_color(), xytext=(3, -12), textcoords="offset points")
    ax.axhline(result.config.seats, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("seconds since the on-sale opened")
    ax.set_ylabel("seats")
    ax.legend(fontsize="small")


def admission_curve(result: RushResult, ax, label: str = "") -> None:
    """Buyers admitted from the queue over time (committed, from the database), against the set rate."""
    if not result.admissions:
        return
    xs = [0.0] + result.admissions
    ax.step(xs, range(len(xs)), where="post", label=f"{label} admitted".strip())
    rate = result.config.admission_per_minute
    if rate:
        first = result.admissions[0]
        end = min(result.admissions[-1], first + len(result.admissions) * 60 / rate)  # no further than the admitted
        ax.plot([first, end], [0, (end - first) * rate / 60], color="grey", linewidth=0.8, linestyle="--",
                label=f"set rate {rate}/min")
    ax.set_xlabel("seconds since the on-sale opened")
    ax.set_ylabel("buyers admitted")
    ax.legend(fontsize="small")
