"""The load plans in bench/ stay valid: JMeter plans parse and point at real routes (Debian's
JMeter cannot run them here, see BENCHMARKS.md), wrk scripts name real files and routes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from aiohttp import web

from aggserver.domain.symbols import load_symbols
from aggserver.settings import DEFAULT_SYMBOLS_FILE
from aggserver.web.routes.table import ROUTE_TABLES
from tests.paths import REPO_ROOT

BENCH = REPO_ROOT / "bench"


def _matches_a_route(method: str, path: str) -> bool:
    app = web.Application()
    for table in ROUTE_TABLES:
        app.router.add_routes(table)
    for resource in app.router.resources():
        info = resource.get_info()
        pattern = info.get("pattern")
        if (pattern is not None and pattern.fullmatch(path)) or info.get("path") == path:
            return any(route.method in (method, "*") for route in resource)
    return False


def _props(element: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.text or "" for p in element.iter() if p.tag.endswith("Prop")}


@pytest.mark.parametrize("plan", ["prices.jmx", "prices-uniform.jmx"])
def test_jmeter_plan_is_the_original_load_shape_on_a_real_route(plan: str) -> None:
    root = ET.parse(BENCH / "jmeter" / plan).getroot()  # noqa: S314 - our own file
    group = _props(next(root.iter("ThreadGroup")))
    assert group["ThreadGroup.num_threads"] == "1000"
    assert group["ThreadGroup.ramp_time"] == "10"
    assert group["LoopController.loops"] == "10"
    sampler = _props(next(root.iter("HTTPSamplerProxy")))
    assert sampler["HTTPSampler.domain"] == "${host}"
    assert sampler["HTTPSampler.port"] == "${port}"
    path = sampler["HTTPSampler.path"].replace("${symbol}", load_symbols(DEFAULT_SYMBOLS_FILE).ordered[0])
    assert _matches_a_route(sampler["HTTPSampler.method"], path)
    variables = {
        _props(e)["Argument.name"]: _props(e)["Argument.value"]
        for e in root.iter("elementProp")
        if e.get("elementType") == "Argument"
    }
    assert variables == {"host": "${__P(host,127.0.0.1)}", "port": "${__P(port,8080)}"}


def test_uniform_plan_reads_symbols_csv() -> None:
    root = ET.parse(BENCH / "jmeter" / "prices-uniform.jmx").getroot()  # noqa: S314 - our own file
    dataset = _props(next(root.iter("CSVDataSet")))
    assert dataset["variableNames"] == "symbol"
    assert dataset["ignoreFirstLine"] == "true"
    assert "symbols" in dataset["filename"]


@pytest.mark.parametrize("script", ["uniform.lua", "mixed.lua"])
def test_wrk_scripts_use_real_routes_and_share_the_report(script: str) -> None:
    text = (BENCH / "wrk" / script).read_text()
    assert '"/prices/"' in text
    assert "report.lua" in text
    if "POST" in text:
        assert '"/refresh/"' in text
    assert _matches_a_route("GET", "/prices/btcusdt")
    assert _matches_a_route("POST", "/refresh/btcusdt")
    assert not _matches_a_route("POST", "/prices/btcusdt")


def test_batch_script_requests_the_batch_route() -> None:
    text = (BENCH / "wrk" / "batch.lua").read_text()
    assert '"/prices?assets="' in text
    assert "report.lua" in text
    assert _matches_a_route("GET", "/prices")
