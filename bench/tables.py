"""
Turning per-round measurements into medians and a Markdown table.
"""

import statistics
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Row:
    """
    One line of the table: a metric of a scenario.

    @ivar lowerIsBetter: for the reader; ratios are plain value ratios.
    @ivar ratio: whether a ratio between two targets means anything (not
        for counts, or for RSS growth that is near zero when all is well).
    """

    scenario: str
    scenarioLabel: str
    metric: str
    metricLabel: str
    format: Callable[[float], str]
    lowerIsBetter: bool = False
    ratio: bool = True


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _mib(value: float) -> str:
    return f"{value:.1f}"


def _ratio(value: float) -> str:
    return f"{value:.2f}"


def rows(bigMiB: int, idle: int, limitRate: str) -> list[Row]:
    """
    @return: the table's rows, labelled with this run's sizes.
    """
    result = []
    for connections in (1, 50):
        key, label = f"small_c{connections}", f"1 KiB GET, c={connections}"
        result += [
            Row(key, label, "rps", "req/s", _count),
            Row(key, label, "p50_ms", "p50 ms", _ms, True),
            Row(key, label, "p99_ms", "p99 ms", _ms, True),
            Row(key, label, "cpu_s_per_10k", "proxy CPU s / 10k req", _seconds, True),
        ]
    result += [
        Row("medium_c10", "1 MiB GET, c=10", "mbps", "MB/s", _count),
        Row("medium_c10", "1 MiB GET, c=10", "p99_ms", "p99 ms", _ms, True),
        Row("large", f"{bigMiB} MiB GET", "mbps", "MB/s", _count),
        Row(
            "large",
            f"{bigMiB} MiB GET",
            "rss_growth_mib",
            "proxy peak RSS growth MiB",
            _mib,
            True,
            False,
        ),
        Row(
            "large_limited",
            f"{bigMiB} MiB GET, curl --limit-rate {limitRate}",
            "mbps",
            "MB/s",
            _count,
        ),
        Row(
            "large_limited",
            f"{bigMiB} MiB GET, curl --limit-rate {limitRate}",
            "rss_growth_mib",
            "proxy peak RSS growth MiB",
            _mib,
            True,
            False,
        ),
        Row("connect", f"CONNECT {bigMiB} MiB (TLS origin)", "mbps", "MB/s", _count),
        Row(
            "connect",
            f"CONNECT {bigMiB} MiB (TLS origin)",
            "cpu_s_per_gb",
            "proxy CPU s / GB",
            _seconds,
            True,
        ),
        Row(
            "idle",
            f"{idle:,} idle connections",
            "rss_kib_per_conn",
            "RSS KiB / connection",
            _mib,
            True,
        ),
        Row(
            "idle",
            f"{idle:,} idle connections",
            "latency_ms",
            "latency of 1 request ms",
            _ms,
            True,
        ),
        Row(
            "idle",
            f"{idle:,} idle connections",
            "open",
            "connections still open",
            _count,
            ratio=False,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "rps_off",
            "req/s, log off",
            _count,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "rps_on",
            "req/s, combined log to file",
            _count,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "ratio",
            "on / off",
            _ratio,
            ratio=False,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "cpu_s_per_10k_off",
            "proxy CPU s / 10k req, log off",
            _seconds,
            True,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "cpu_s_per_10k_on",
            "proxy CPU s / 10k req, log on",
            _seconds,
            True,
        ),
        Row(
            "access_log",
            "1 KiB GET, c=50, access log",
            "cpu_ratio",
            "proxy CPU per request, on / off",
            _ratio,
            ratio=False,
        ),
    ]
    return result


def median(rounds: list[dict], metric: str) -> float | None:
    """
    @return: the median of C{metric} over the rounds that measured it.
    """
    values = [r[metric] for r in rounds if r.get(metric) is not None]
    return statistics.median(values) if values else None


def medians(results: dict, table: list[Row]) -> dict:
    """
    @param results: target -> C{{"scenarios": {scenario: [round dicts]}}}.
    @return: target -> scenario -> metric -> median.
    """
    out: dict = {}
    for target, data in results.items():
        for row in table:
            value = median(data["scenarios"].get(row.scenario, []), row.metric)
            out.setdefault(target, {}).setdefault(row.scenario, {})[row.metric] = value
    return out


def markdown(results: dict, table: list[Row], targets: list[str]) -> str:
    """
    @return: a Markdown table, rows = metrics, columns = targets then the
        ratios webproxy/direct and webproxy/squid, followed by notes on
        failures and errors.
    """
    middle = medians(results, table)
    ratios = [other for other in ("direct", "squid") if other in targets]
    header = ["scenario", "metric", *targets, *(f"webproxy/{o}" for o in ratios)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---|" + "--:|" * (len(header) - 2),
    ]
    notes: list[str] = []
    flagged: set[tuple[str, str]] = set()
    for target in targets:
        for scenario, messages in results[target]["errors"].items():
            flagged.add((target, scenario))
            rounds = len(results[target]["scenarios"].get(scenario, []))
            notes.append(
                f"{target}, {scenario} ({len(messages)} of {rounds} rounds): "
                + " / ".join(messages)
            )
    previous = None
    for row in table:
        cells = [
            row.scenarioLabel if row.scenarioLabel != previous else "",
            row.metricLabel,
        ]
        previous = row.scenarioLabel
        for target in targets:
            value = middle[target][row.scenario][row.metric]
            if value is None:
                cells.append("failed" if results[target]["failure"] else "–")
            else:
                mark = "*" if (target, row.scenario) in flagged else ""
                cells.append(row.format(value) + mark)
        mine = middle.get("webproxy", {}).get(row.scenario, {}).get(row.metric)
        for other in ratios:
            theirs = middle[other][row.scenario][row.metric]
            if mine is None or not theirs or not row.ratio:
                cells.append("–")
            else:
                cells.append(f"{mine / theirs:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    failures = []
    for target in targets:
        failure = results[target]["failure"]
        if failure:
            first, _, rest = failure.partition("\n")
            tail = "\n".join(rest.splitlines()[-12:])
            block = (
                "\n\n  ```\n"
                + "\n".join(f"  {line}" for line in tail.splitlines())
                + "\n  ```"
                if tail
                else ""
            )
            failures.append(f"{target} failed: {first}{block}")
    if failures or notes:
        text += "\n" + "\n".join(f"- {n}" for n in failures + notes) + "\n"
        if notes:
            text += "- `*`: some rounds of that scenario had errors (see above).\n"
    return text
