"""The offline compiler: instruction text + public task facts -> Plan -> one self-contained solution script.

    from src.pipeline.code.compiler import CompilerCoder, parse_plan, render_script, repair_plan
    plan = parse_plan(instruction_text, facts)       # keyword/regex parsing onto the data type's defaults
    code = render_script(plan, facts)                # templates/*.py.tmpl + catalog/*.yaml
    fixed = repair_plan(plan, execution_result)      # change the failing step, or None

Compiled scripts import only numpy, pandas, scipy, scikit-learn and LightGBM, and print `cv_score=<float>`.
"""

from src.pipeline.code.compiler.baselines import render_baseline_gbdt
from src.pipeline.code.compiler.coder import CompilerCoder
from src.pipeline.code.compiler.parse import parse_plan
from src.pipeline.code.compiler.plan import ModelSpec, Plan, Substitution, default_plan, finalize
from src.pipeline.code.compiler.plan_repair import diagnose, repair_plan
from src.pipeline.code.compiler.render import render_script

__all__ = [
    "CompilerCoder",
    "ModelSpec",
    "Plan",
    "Substitution",
    "default_plan",
    "diagnose",
    "finalize",
    "parse_plan",
    "render_baseline_gbdt",
    "render_script",
    "repair_plan",
]
