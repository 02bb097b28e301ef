"""The Grafana dashboard (bot/ops/grafana/cx-catalyst.json) queries only what exists: every PromQL
expression is parsed and each metric and label it names must be one our Metrics registry exposes;
every SQL query is prepared and run against the migrated database."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from bot.runtime.metrics import Metrics
from db.stats import CostTotal
from tests.cli_runner import ROOT

DASHBOARD = ROOT / "bot" / "ops" / "grafana" / "cx-catalyst.json"
PROMETHEUS, POSTGRES = "prometheus", "grafana-postgresql-datasource"
# Families the dashboard may leave out, and why.
NOT_ON_THE_DASHBOARD = {"cx_scheduled_runs"}  # a debugging aid: `cx jobs list` shows the same

AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
               "quantile", "limitk", "limit_ratio"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_sum", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "hour", "idelta", "increase", "irate", "label_join", "label_replace", "ln", "log2",
    "log10", "minute", "month", "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort",
    "sort_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time",
}
BINARY = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or", "unless", "atan2"}
TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
  | (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=(){}\[\],:])
""", re.X)


@dataclass
class Parsed:
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)  # metric, labels its matchers name
    grouping: set[str] = field(default_factory=set)  # labels named in by / without / on / ignoring


class PromQL:
    """A recursive-descent parser of the PromQL the dashboard uses: selectors, ranges and subqueries,
    functions, aggregations with by/without, binary operators with bool/on/ignoring/group_*."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            match = TOKEN.match(text, pos)
            if match is None:
                raise SyntaxError(f"cannot read {text[pos:pos + 20]!r}")
            pos = match.end()
            if match.lastgroup != "space":
                self.tokens.append((match.lastgroup or "", match.group()))
        self.at = 0
        self.parsed = Parsed()

    def parse(self) -> Parsed:
        self.expr()
        if self.at != len(self.tokens):
            raise SyntaxError(f"unexpected {self.peek()!r}")
        return self.parsed

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None, kind: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise SyntaxError(f"expected {expected or kind}, got the end")
        got_kind, got = self.tokens[self.at]
        if (expected is not None and got != expected) or (kind is not None and got_kind != kind):
            raise SyntaxError(f"expected {expected or kind}, got {got!r}")
        self.at += 1
        return got

    def labels(self) -> set[str]:
        self.take("(")
        names = set()
        while self.peek() != ")":
            names.add(self.take(kind="ident"))
            if self.peek() == ",":
                self.take(",")
        self.take(")")
        return names

    def expr(self) -> None:
        self.unary()
        while self.peek() in BINARY:
            self.take()
            if self.peek() == "bool":
                self.take()
            if self.peek() in ("on", "ignoring"):
                self.take()
                self.parsed.grouping |= self.labels()
            if self.peek() in ("group_left", "group_right"):
                self.take()
                if self.peek() == "(":
                    self.parsed.grouping |= self.labels()
            self.unary()

    def unary(self) -> None:
        if self.peek() in ("-", "+"):
            self.take()
        self.primary()
        if self.peek() == "[":
            self.take("[")
            self.take(kind="duration")
            if self.peek() == ":":
                self.take(":")
                if self.peek() != "]":
                    self.take(kind="duration")
            self.take("]")
        if self.peek() == "offset":
            self.take()
            self.take(kind="duration")

    def args(self) -> None:
        self.take("(")
        while self.peek() != ")":
            self.expr()
            if self.peek() == ",":
                self.take(",")
        self.take(")")

    def primary(self) -> None:
        kind, token = self.tokens[self.at] if self.at < len(self.tokens) else ("", "")
        if kind in ("number", "string"):
            self.take()
        elif token == "(":
            self.take("(")
            self.expr()
            self.take(")")
        elif token in AGGREGATORS and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] in (
                "(", "by", "without"):
            self.take()
            if self.peek() in ("by", "without"):
                self.take()
                self.parsed.grouping |= self.labels()
            self.args()
            if self.peek() in ("by", "without"):
                self.take()
                self.parsed.grouping |= self.labels()
        elif kind == "ident" and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == "(":
            if token not in FUNCTIONS:
                raise SyntaxError(f"unknown function {token}")
            self.take()
            self.args()
        elif kind == "ident":
            metric = self.take()
            self.parsed.selectors.append((metric, self.matchers() if self.peek() == "{" else set()))
        else:
            raise SyntaxError(f"unexpected {token!r}")

    def matchers(self) -> set[str]:
        self.take("{")
        names = set()
        while self.peek() != "}":
            names.add(self.take(kind="ident"))
            if self.peek() not in ("=", "!=", "=~", "!~"):
                raise SyntaxError(f"expected a label matcher, got {self.peek()!r}")
            self.take()
            self.take(kind="string")
            if self.peek() == ",":
                self.take(",")
        self.take("}")
        return names


def exposed_series() -> dict[str, set[str]]:
    """Every sample name the registry can expose, with its labels: each labelled metric given one child."""
    metrics = Metrics()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase) and value._labelnames:
            value.labels(*("x" for _ in value._labelnames))
    metrics.llm_cost.totals = [CostTotal("triage", "anthropic", Decimal("0.1"))]
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        series.setdefault(family.name, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def targets() -> Iterator[tuple[str, str, dict[str, Any]]]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(json.loads(DASHBOARD.read_text())["panels"]):
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"{panel['title']}: no query"
        for target in panel["targets"]:
            yield panel["title"], (target.get("datasource") or panel["datasource"])["type"], target


PROMQL = [(title, t["expr"]) for title, kind, t in targets() if kind == PROMETHEUS]
SQL = [(title, t["rawSql"], t["format"]) for title, kind, t in targets() if kind == POSTGRES]


def test_the_dashboard_has_both_kinds_of_panel_and_nothing_else():
    kinds = {kind for _, kind, _ in targets()}
    assert kinds == {PROMETHEUS, POSTGRES}
    assert len(PROMQL) >= 15 and len(SQL) >= 8


@pytest.mark.parametrize(("title", "expr"), PROMQL, ids=[title for title, _ in PROMQL])
def test_each_promql_names_metrics_and_labels_that_exist(title, expr):
    series = exposed_series()
    parsed = PromQL(expr).parse()
    assert parsed.selectors, "a query without a metric"
    named_labels: set[str] = set()
    for metric, matched in parsed.selectors:
        assert metric in series, f"{metric} is not a metric of bot/runtime/metrics.py"
        assert matched <= series[metric], f"{metric} has no label {matched - series[metric]}"
        named_labels |= series[metric]
    assert parsed.grouping <= named_labels, f"grouping by {parsed.grouping - named_labels}, which no metric has"


def test_the_parser_refuses_what_is_not_there():
    series = exposed_series()
    assert PromQL('sum by (route) (rate(cx_triage_routes_total[5m]))').parse().selectors == [
        ("cx_triage_routes_total", set())]
    assert "cx_triage_route_total" not in series  # a typo'd name would fail the test above
    with pytest.raises(SyntaxError, match="unknown function"):
        PromQL("rates(cx_jobs_total[5m])").parse()
    with pytest.raises(SyntaxError):
        PromQL("sum(rate(cx_jobs_total[5m])").parse()
    with pytest.raises(SyntaxError):
        PromQL('cx_jobs_total{outcome="ok"').parse()
    assert PromQL('max(cx_queue_jobs{status="failed"})').parse().selectors == [("cx_queue_jobs", {"status"})]


def test_every_metric_family_is_on_the_dashboard():
    families = {f.name for f in Metrics().registry.collect()}
    used = {metric for _, expr in PROMQL for metric, _ in PromQL(expr).parse().selectors}
    missing = {f for f in families - NOT_ON_THE_DASHBOARD
               if not any(u == f or u.startswith(f + "_") for u in used)}
    assert missing == set()


def _grafana_macros(sql: str) -> str:
    """What Grafana's PostgreSQL data source makes of its macros, for a fixed range."""
    start, end = "'2026-01-01T00:00:00Z'", "'2026-12-31T00:00:00Z'"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {start} AND {end}", sql)
    sql = sql.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    assert "$" not in sql, f"a macro or variable this test does not know: {sql}"
    return sql


async def test_each_sql_query_runs_on_the_migrated_database(pool):
    async with pool.acquire() as conn:
        for title, sql, fmt in SQL:
            statement = await conn.prepare(_grafana_macros(sql))  # an unknown table, view or column fails here
            columns = [(a.name, a.type.name) for a in statement.get_attributes()]
            await statement.fetch()
            if fmt == "time_series":
                assert columns[0] == ("time", "timestamptz"), f"{title}: the first column must be the time"
                assert all(t in ("int4", "int8", "numeric", "float8") for _, t in columns[1:]), f"{title}: {columns}"


async def test_a_query_on_a_missing_view_fails(pool):
    import asyncpg

    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.prepare(_grafana_macros("SELECT day FROM metrics_daily_casez WHERE $__timeFilter(day)"))
