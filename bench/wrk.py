"""Load with `wrk` (Debian's 4.1): signed Shopify deliveries with a fresh webhook id each.

The bodies and their HMACs are computed here, before the run, and written into the Lua
script, so wrk only picks one and sets `X-Shopify-Webhook-Id` per request: the load
generator is never the bottleneck.

Two modes:
- closed loop (`rate=None`): as fast as the server answers, `wrk -t1 -c8` by default; wrk's
  own latency histogram.
- constant rate (`rate=R`): wrk2 is not packaged for Debian, so the script paces itself:
  one connection per wrk thread, each sending on a fixed schedule (its share of R), timed
  with LuaJIT's FFI `clock_gettime`. A response is timed from when its request was *due*,
  so a server that falls behind is charged for the wait it causes (the coordinated-omission
  correction wrk2 makes); when on schedule, from the moment it was sent (wrk's `delay()`
  only has millisecond resolution, so the due time is rounded up to the next millisecond).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WRK = shutil.which("wrk") or "/usr/bin/wrk"

LUA_COMMON = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct {{ long tv_sec; long tv_nsec; }} bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

wrk.method = "POST"
wrk.path = "/webhooks"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Shopify-Topic"] = "{topic}"
wrk.headers["X-Shopify-Shop-Domain"] = "{shop}"
wrk.headers["X-Shopify-API-Version"] = "2026-07"

local threads = {{}}
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local counter = 0
local function next_request()
  counter = counter + 1
  local i = (counter % #bodies) + 1
  wrk.headers["X-Shopify-Webhook-Id"] = "{run}-" .. tid .. "-" .. counter
  wrk.headers["X-Shopify-Event-Id"] = "{run}-e" .. tid .. "-" .. counter
  wrk.headers["X-Shopify-Hmac-Sha256"] = hmacs[i]
  return wrk.format(nil, nil, nil, bodies[i])
end
"""

LUA_CLOSED = r"""
request = next_request

function done(summary, latency, requests)
  local f = io.open("{out}", "w")
  f:write(string.format(
    '{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %f}}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
  f:close()
end
"""

LUA_PACED = r"""
local interval_us = {interval_us}
local next_at = 0
local due = 0
lat = {{}}
bad = 0

function delay()
  local now = now_us()
  if next_at == 0 then next_at = now + math.random() * interval_us end
  due = next_at
  next_at = next_at + interval_us
  if due > now then
    local wait_ms = math.ceil((due - now) / 1000)
    due = now + wait_ms * 1000
    return wait_ms
  end
  return 0
end

request = next_request

function response(status, headers, body)
  lat[#lat + 1] = now_us() - due
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local f = io.open("{out}", "w")
  local all = {{}}
  local bad_total = 0
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("lat")) do all[#all + 1] = v end
    bad_total = bad_total + thread:get("bad")
  end
  f:write(string.format(
    '{{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "bad_status": %d, "corrected_us": [',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout, bad_total))
  for i, v in ipairs(all) do
    if i > 1 then f:write(",") end
    f:write(string.format("%d", v))
  end
  f:write(string.format('], "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %f}}',
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
  f:close()
end
"""


@dataclass
class LoadResult:
    label: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    target_rate: float | None = None
    # Paced runs: wrk's own (uncorrected) percentiles, for comparison.
    uncorrected: dict[str, float] = field(default_factory=dict)
    during: Any = None  # what run(during=...) returned

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def write_script(
    path: Path,
    deliveries: list[tuple[bytes, str]],
    topic: str,
    shop: str,
    out: Path,
    interval_us: float | None,
) -> None:
    run = uuid.uuid4().hex[:10]
    parts = ["local bodies = {"]
    for body, _ in deliveries:
        text = body.decode()
        assert "]==]" not in text
        parts.append(f"[==[{text}]==],")
    parts.append("}\nlocal hmacs = {")
    parts.extend(f'"{signature}",' for _, signature in deliveries)
    parts.append("}\n")
    parts.append(LUA_COMMON.format(topic=topic, shop=shop, run=run))
    if interval_us is None:
        parts.append(LUA_CLOSED.format(out=out))
    else:
        parts.append(LUA_PACED.format(out=out, interval_us=f"{interval_us:.3f}"))
    path.write_text("\n".join(parts))


def run(
    label: str,
    url: str,
    deliveries: list[tuple[bytes, str]],
    *,
    topic: str,
    shop: str,
    duration: float,
    work_dir: Path,
    connections: int = 8,
    threads: int = 1,
    rate: float | None = None,
    during: Callable[[], Any] | None = None,
) -> LoadResult:
    """One wrk run against `url`/webhooks; `rate` paces it (requests per second in all).
    `during` is called once the connections are open (a third of the way in); what it
    returns is kept in the result's `during`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    script = work_dir / f"{label}.lua"
    out = work_dir / f"{label}.json"
    out.unlink(missing_ok=True)
    if rate is not None:
        threads = connections  # one connection per thread: its schedule is its own
        interval_us = threads * 1_000_000 / rate
    else:
        interval_us = None
    write_script(script, deliveries, topic, shop, out, interval_us)
    argv = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url.rstrip("/") + "/webhooks",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = None
    if during is not None:
        time.sleep(max(0.5, duration / 3))
        seen = during()
    stdout, stderr = process.communicate(timeout=duration + 60)
    completed = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    (work_dir / f"{label}.wrk.txt").write_text(completed.stdout + completed.stderr)
    if completed.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    data = json.loads(out.read_text())
    seconds = data["duration_us"] / 1e6
    errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout") if data[k]}
    if rate is None:
        return LoadResult(
            label=label,
            requests=data["requests"],
            duration_s=seconds,
            rps=data["requests"] / seconds,
            p50_ms=data["p50_us"] / 1000,
            p95_ms=data["p95_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            errors=errors,
            during=seen,
        )
    corrected = sorted(data["corrected_us"])
    if data.get("bad_status"):
        errors["non_200"] = int(data["bad_status"])
    return LoadResult(
        label=label,
        requests=data["requests"],
        duration_s=seconds,
        rps=data["requests"] / seconds,
        p50_ms=percentile(corrected, 50) / 1000,
        p95_ms=percentile(corrected, 95) / 1000,
        p99_ms=percentile(corrected, 99) / 1000,
        max_ms=(corrected[-1] if corrected else 0) / 1000,
        errors=errors,
        during=seen,
        target_rate=rate,
        uncorrected={
            "p50_ms": data["p50_us"] / 1000,
            "p95_ms": data["p95_us"] / 1000,
            "p99_ms": data["p99_us"] / 1000,
        },
    )


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return float(ordered[rank - 1])
