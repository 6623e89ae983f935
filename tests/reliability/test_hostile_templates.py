"""Merchant templates that try to escape the sandbox, read configuration or never finish.

Each is refused at save time (`check_template`) and, if one was stored anyway (saved before a
rule was tightened, or written straight into the database), refused or stopped at send time
(`render_template`), in bounded time, without a secret in any message. The process-level
half (the worker keeps running and the next incident goes through) is in
`test_faults.py::test_hostile_templates_in_the_worker`.
"""

from __future__ import annotations

import time

import pytest

from plugin.emails import check_template, render_template, sample_context
from plugin.errors import TemplateError
from tests.reliability import report

pytestmark = pytest.mark.slow

# A refusal may take the render deadline (0.5 s) twice over (check_template renders twice),
# plus scheduling noise on a busy 2-core machine.
BOUND_SECONDS = 3.0

ESCAPES = {
    "class_mro": "{{ ''.__class__.__mro__ }}",
    "subclasses": "{{ [].__class__.__base__.__subclasses__() }}",
    "globals_via_method": "{{ shop_name.upper.__globals__ }}",
    "self_globals": "{{ self.__init__.__globals__ }}",
    "attr_filter": "{{ shop_name|attr('__class__') }}",
    "method_self": "{{ shop_name.startswith.__self__ }}",
    "dict_internals": "{{ {}.items.__self__.__class__ }}",
    "loop_internals": "{% for x in range(2) %}{{ loop.__class__.__init__ }}{% endfor %}",
    "range_globals": "{{ range.__globals__ }}",
    "str_format": "{{ '{0.__class__}'.format(shop_name) }}",
    "format_map": "{{ '{x}'.format_map({'x': 1}) }}",
    "percent_format": "{{ '%s' % shop_name }}",
    "safe_filter": "{{ first_name|safe }}",
    "include_file": "{% include '/etc/passwd' %}",
    "extends_layout": "{% extends 'layout.html' %}",
    "import_macro": "{% import 'layout.html' as layout %}",
    "set_variable": "{% set x = shop_name %}{{ x }}",
}
READ_CONFIG = {
    "config": "{{ config }}",
    "config_secret": "{{ config.SECRET_KEY }}",
    "request": "{{ request.environ }}",
    "g": "{{ g }}",
    "environ": "{{ environ }}",
    "cycler": "{{ cycler.__init__.__globals__.os.environ }}",
    "lipsum": "{{ lipsum.__globals__ }}",
    "namespace": "{{ namespace.__init__ }}",
    "joiner": "{{ joiner }}",
    "url_for": "{{ url_for.__globals__ }}",
    "get_flashed": "{{ get_flashed_messages.__globals__ }}",
}
NEVER_FINISH = {
    "three_loops_no_output": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "three_loops_output": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "four_loops": (
        "{% for a in range(9) %}{% for b in range(9) %}{% for c in range(9) %}{% for d in range(9) %}"
        "{% endfor %}{% endfor %}{% endfor %}{% endfor %}"
    ),
    "huge_range": "{% for a in range(10**9) %}x{% endfor %}",
    "recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "doubling_macro": "{% macro f(x) %}{{ f(x ~ x) }}{% endmacro %}{{ f('a') }}",
    "squaring_macro": "{% macro f(x) %}{{ f(x * x) }}{% endmacro %}{{ f(3) }}",
    "string_bomb": "{{ 'x' * 10**9 }}",
    "list_bomb": "{{ [1] * 10**9 }}",
    "replace_bomb": "{{ ('a' * 1000)|replace('a', 'a' * 1000) }}",
    "join_bomb": "{{ range(1000)|join('x' * 10000) }}",
    "power": "{{ 9**(9**9) }}",
    # Found by this suite: each power alone is small, the tower is a ~10^16,000,000 integer
    # that one C-level pow() computes for tens of seconds, out of the deadline's reach.
    "power_tower": "{{ (((10**64)**64)**64)**64 }}",
    "power_tower_deeper": "{{ ((((10**64)**64)**64)**64)**64 }}",
    "float_overflow": "{{ 10.0**400 }}",
    "wide_format_spec": "{{ '{:999999999}'.format(1) }}",
}


def _attempt(source: str, where: str) -> tuple[str, float]:
    started = time.monotonic()
    try:
        if where == "save":
            check_template(source, "html")
        else:
            render_template(source, sample_context(), html=True)
    except TemplateError as error:
        return f"refused: {error}", time.monotonic() - started
    return "accepted", time.monotonic() - started


CASES = [(f"escape:{k}", v) for k, v in ESCAPES.items()]
CASES += [(f"config:{k}", v) for k, v in READ_CONFIG.items()]
CASES += [(f"forever:{k}", v) for k, v in NEVER_FINISH.items()]
RESULTS: dict[str, tuple[str, float]] = {}


@pytest.mark.parametrize("where", ["save", "send"])
@pytest.mark.parametrize(("name", "source"), CASES, ids=[c[0] for c in CASES])
def test_hostile_template_is_refused_in_bounded_time(name: str, source: str, where: str) -> None:
    outcome, seconds = _attempt(source, where)
    RESULTS[f"{where}:{name}"] = (outcome, seconds)
    assert outcome.startswith("refused"), f"{name} was accepted at {where} time"
    assert seconds < BOUND_SECONDS, f"{name} took {seconds:.1f}s to refuse at {where} time"
    # The refusal names no secret and no internals an attacker could use.
    for leak in ("Traceback", "postgresql", "sqlalchemy", "/work/", "site-packages"):
        assert leak not in outcome


def test_hostile_templates_summary() -> None:
    """One report line for the whole table (runs after the parametrized cases)."""
    if not RESULTS:
        pytest.skip("the table did not run")
    slowest = max(RESULTS.items(), key=lambda item: item[1][1])
    section = report.section(
        "Merchant templates attacking the sandbox",
        f"{len(CASES)} templates (sandbox escapes, reading configuration, loops and bombs), "
        "each at save time and at send time",
    )
    section.add(
        refused=sum(1 for outcome, _ in RESULTS.values() if outcome.startswith("refused")),
        accepted=sum(1 for outcome, _ in RESULTS.values() if not outcome.startswith("refused")),
        **{"slowest refusal (s)": round(slowest[1][1], 2), "slowest case": slowest[0]},
    )
