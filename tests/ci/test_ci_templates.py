"""The CI templates: the composite action, the example workflow, the GitLab files, the hooks.

Checked with the tools their platforms' users use (actionlint with shellcheck,
the vendored JSON schemas of check-jsonschema, pre-commit's manifest check),
and run: the composite action's ``run:`` steps with bash exactly as the Actions
runner starts them, with the environment it sets; the pre-commit hooks' entries
on real files with the venv's signoff.

The action's main step calls ``signoff apply``. Until runner/cli.py has it, the
steps run against a recording stand-in ``signoff`` on PATH (what the step hands
over, and how it treats the exit status), and the tests that need the real
command skip, naming it; they turn on by themselves once ``signoff apply``
exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from ci_tools import BIN, ROOT, load, run, tool

ACTION = ROOT / "action.yml"
COMPONENT = ROOT / "gitlab" / "templates" / "signoff.yml"
GITLAB_INCLUDE = ROOT / "gitlab" / "signoff.gitlab-ci.yml"
GITLAB_EXAMPLE = ROOT / "examples" / "gitlab" / ".gitlab-ci.yml"
GITHUB_EXAMPLES = sorted((ROOT / "examples" / "github").glob("*.yml"))
SAMPLE = ROOT / "sample_migrations"

# The `signoff apply` options' environment variables (the CLI contract of issue 11;
# --fail-on has none, it is plan's and lint's option, so the templates pass it
# as an argument).
APPLY_ENV = {
    "SIGNOFF_GATEWAY_URL",
    "SIGNOFF_DATABASE",
    "SIGNOFF_AUDIENCE",
    "SIGNOFF_ALEMBIC_INI",
    "SIGNOFF_WAIT",
    "SIGNOFF_LOCK_WAIT",
    "SIGNOFF_PLAN_ONLY",
    "SIGNOFF_ID_TOKEN_FILE",
    "SIGNOFF_BUNDLE_DIR",
    "SIGNOFF_S3_BUCKET",
    "SIGNOFF_S3_PREFIX",
    "SIGNOFF_S3_ENDPOINT_URL",
}
# Variables the templates use for themselves, not handed to signoff as options.
TEMPLATE_OWN_ENV = {
    "SIGNOFF_ACTION_MODE",
    "SIGNOFF_ACTION_PATH",
    "SIGNOFF_INSTALL_VERSION",
    "SIGNOFF_PACKAGE",
    "SIGNOFF_WORKDIR",
    "SIGNOFF_IMAGE",
    "SIGNOFF_ENVIRONMENT",
    "SIGNOFF_FAIL_ON",  # the scripts turn it into --fail-on
}
GITHUB_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
GITLAB_INPUT = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")


def action() -> dict[str, Any]:
    document = load(ACTION)
    assert isinstance(document, dict)
    return document


def component_documents() -> tuple[dict[str, Any], dict[str, Any]]:
    header, jobs = yaml.safe_load_all(COMPONENT.read_text(encoding="utf-8"))
    return header, jobs


def component_jobs_text() -> str:
    return COMPONENT.read_text(encoding="utf-8").split("\n---\n", 1)[1]


# -- GitHub: actionlint and the schemas -----------------------------------------------


def actionlint_repo(tmp_path: Path, workflow: Path, text: str | None = None) -> Path:
    """A repository holding the workflow with `uses: ./` for signoff, and action.yml.

    actionlint then checks every `with:` against the inputs action.yml declares
    (it cannot for `your-org/signoff@...`, which it would have to download).
    """
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copy(ACTION, repo / "action.yml")
    source = workflow.read_text(encoding="utf-8") if text is None else text
    local = re.sub(r"uses: [\w.-]+/signoff@[\w.-]+", "uses: ./", source)
    assert local != source, f"{workflow.name} does not use the signoff action"
    (repo / ".github" / "workflows" / workflow.name).write_text(local, encoding="utf-8")
    return repo


@pytest.mark.parametrize("workflow", GITHUB_EXAMPLES, ids=lambda path: path.name)
def test_actionlint_passes_on_the_example_workflow(tmp_path: Path, workflow: Path) -> None:
    repo = actionlint_repo(tmp_path, workflow)
    result = run([tool("actionlint"), "-shellcheck", tool("shellcheck"), "-no-color"], cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_wrong_input_and_an_unquoted_variable(tmp_path: Path) -> None:
    # The control for the test above: actionlint reads our action.yml and runs shellcheck.
    workflow = GITHUB_EXAMPLES[0]
    text = workflow.read_text(encoding="utf-8").replace("database: ehr", "databse: ehr", 1)
    text = text.replace('echo "plan $PLAN_HASH needs no approval"', "echo plan $PLAN_HASH", 1)
    repo = actionlint_repo(tmp_path, workflow, text)
    result = run([tool("actionlint"), "-shellcheck", tool("shellcheck"), "-no-color"], cwd=repo)
    assert result.returncode == 1
    assert 'input "databse" is not defined in action "Signoff"' in result.stdout
    assert "SC2086" in result.stdout


def check_jsonschema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)])


def test_check_jsonschema_passes_on_the_workflow_and_the_action() -> None:
    workflows = check_jsonschema("vendor.github-workflows", *GITHUB_EXAMPLES)
    assert workflows.returncode == 0, workflows.stdout + workflows.stderr
    action_result = check_jsonschema("vendor.github-actions", ACTION)
    assert action_result.returncode == 0, action_result.stdout + action_result.stderr


def test_check_jsonschema_refuses_a_broken_action(tmp_path: Path) -> None:
    broken = action()
    broken["runs"]["using"] = "composite-ish"
    path = tmp_path / "action.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert check_jsonschema("vendor.github-actions", path).returncode == 1


# -- GitHub: the action's metadata ----------------------------------------------------


def test_action_inputs_outputs_and_steps() -> None:
    document = action()
    inputs = document["inputs"]
    assert {name for name, spec in inputs.items() if spec.get("required")} == {
        "gateway-url",
        "database",
    }
    assert inputs["mode"]["default"] == "apply" and inputs["audience"]["default"] == "signoff"
    assert all(spec.get("description") for spec in inputs.values())
    steps = document["runs"]["steps"]
    assert document["runs"]["using"] == "composite"
    assert steps[0]["uses"].startswith("actions/setup-python@")
    used = " ".join(json.dumps(step) for step in steps)
    for name in inputs:
        assert f"inputs.{name}" in used, f"input {name} is declared but never used"
    for name, spec in document["outputs"].items():
        assert spec["value"] == f"${{{{ steps.signoff.outputs.{name} }}}}"
    assert set(document["outputs"]) == {
        "plan-hash",
        "needs-approval",
        "applied-count",
        "bundle-uri",
    }
    install = next(step for step in steps if step.get("id") == "install")
    assert install["env"]["SIGNOFF_ACTION_PATH"] == "${{ github.action_path }}"


def test_action_hands_signoff_only_contract_variables() -> None:
    step = next(step for step in action()["runs"]["steps"] if step.get("id") == "signoff")
    names = set(step["env"]) - TEMPLATE_OWN_ENV
    assert names <= APPLY_ENV, names - APPLY_ENV


# -- no interpolation into shell --------------------------------------------------------


def test_no_run_step_interpolates_an_expression() -> None:
    scripts: list[tuple[str, str]] = []
    for step in action()["runs"]["steps"]:
        if "run" in step:
            scripts.append((f"action.yml step {step.get('id')}", step["run"]))
    for workflow in GITHUB_EXAMPLES:
        for job_name, job in load(workflow)["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    scripts.append((f"{workflow.name} job {job_name}", step["run"]))
    assert len(scripts) >= 3
    for where, script in scripts:
        assert "${{" not in script, f"{where}: an expression in run:; pass it through env:"


def gitlab_sources() -> list[tuple[str, Any]]:
    return [
        ("component", component_documents()[1]),
        ("include", load(GITLAB_INCLUDE)),
        ("example", load(GITLAB_EXAMPLE)),
    ]


def gitlab_scripts(sources: list[tuple[str, Any]] | None = None) -> list[tuple[str, str]]:
    """Every line of every job's before_script, script and after_script."""
    scripts: list[tuple[str, str]] = []
    for source, document in sources or gitlab_sources():
        for job_name, job in document.items():
            if not isinstance(job, dict):
                continue
            for key in ("before_script", "script", "after_script"):
                lines = job.get(key) or []
                for line in [lines] if isinstance(lines, str) else lines:
                    scripts.append((f"{source} {job_name}.{key}", str(line)))
    return scripts


def interpolated(scripts: list[tuple[str, str]]) -> list[str]:
    """Where a script line holds an input or expression the platform pastes in."""
    return [where for where, line in scripts if "$[[" in line or "${{" in line]


def test_no_gitlab_script_interpolates_an_input() -> None:
    scripts = gitlab_scripts()
    assert any(where.startswith("component signoff-plan.script") for where, _ in scripts)
    assert interpolated(scripts) == [], "pass inputs through variables:, not into scripts"


def test_the_no_interpolation_check_sees_a_bad_template() -> None:
    bad = component_jobs_text() + "\nevil:\n  after_script: echo $[[ inputs.database ]]\n"
    scripts = gitlab_scripts([("bad", yaml.safe_load(bad))])
    assert interpolated(scripts) == ["bad evil.after_script"]


# -- shellcheck on every script --------------------------------------------------------


def test_shellcheck_passes_on_the_action_and_gitlab_scripts(tmp_path: Path) -> None:
    files: list[Path] = []
    for step in action()["runs"]["steps"]:
        if "run" in step:
            path = tmp_path / f"action-{step['id']}.bash"
            path.write_text("#!/usr/bin/env bash\n" + step["run"], encoding="utf-8")
            files.append(path)
    jobs: dict[str, list[str]] = {}
    for where, line in gitlab_scripts():
        jobs.setdefault(where.rsplit(".", 1)[0], []).append(line)
    for index, (job, lines) in enumerate(jobs.items()):
        path = tmp_path / f"gitlab-{index}.sh"
        path.write_text(f"#!/bin/sh\n# {job}\n" + "\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    result = run([tool("shellcheck"), "--severity=info", *map(str, files)])
    assert result.returncode == 0, result.stdout


# -- the composite action, run as the Actions runner runs it --------------------------


@dataclass
class StepsResult:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str


def read_outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT's two forms: `name=value` and `name<<DELIMITER ... DELIMITER`."""
    outputs: dict[str, str] = {}
    lines = iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                body.append(inner)
            outputs[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
    return outputs


def resolve(value: str, inputs: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("inputs."):
            return inputs[expression.removeprefix("inputs.")]
        if expression == "github.action_path":
            return str(ROOT)
        raise AssertionError(f"the step uses {expression!r}; this test resolves only inputs")

    return GITHUB_EXPRESSION.sub(one, str(value))


def runner_env(workspace: Path, temp: Path, extra: dict[str, str]) -> dict[str, str]:
    event = temp / "event.json"
    event.write_text(json.dumps({"ref": "refs/heads/main"}), encoding="utf-8")
    env = {
        "PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(temp),
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": "acme/ehr-api",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": "e" * 40,
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_ACTOR": "alice",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_API_URL": "https://api.github.com",
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(temp),
        "RUNNER_OS": "Linux",
    }
    env.update(extra)
    return env


def run_action(
    tmp_path: Path,
    inputs: dict[str, str],
    *,
    job_env: dict[str, str] | None = None,
    workspace: Path | None = None,
) -> StepsResult:
    """The action's run: steps but setup-python and the install (signoff is on PATH)."""
    document = action()
    values = {name: str(spec.get("default", "")) for name, spec in document["inputs"].items()}
    values.update(inputs)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    workspace = workspace or (tmp_path / "workspace")
    workspace.mkdir(exist_ok=True)
    base = runner_env(workspace, temp, job_env or {})
    summary = temp / "step-summary.md"
    summary.touch()
    stdout, stderr, outputs = "", "", {}
    returncode = 0
    for index, step in enumerate(document["runs"]["steps"]):
        if "uses" in step or step.get("id") == "install":
            continue
        assert step["shell"] == "bash"
        output_file = temp / f"set_output_{index}"
        output_file.touch()
        env = dict(base)
        env.update({k: resolve(v, values) for k, v in step.get("env", {}).items()})
        env["GITHUB_OUTPUT"] = str(output_file)
        env["GITHUB_STEP_SUMMARY"] = str(summary)
        env["GITHUB_PATH"] = str(temp / "add_path")
        env["GITHUB_ENV"] = str(temp / "set_env")
        script = temp / f"step_{index}.sh"
        script.write_text(step["run"], encoding="utf-8")
        cwd = workspace / resolve(step.get("working-directory", "."), values)
        # What the runner runs for `shell: bash`.
        command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )
        stdout += result.stdout
        stderr += result.stderr
        if step.get("id"):
            outputs.update(read_outputs(output_file))
        returncode = result.returncode
        if returncode != 0:
            break
    return StepsResult(returncode, stdout, stderr, outputs, summary.read_text(encoding="utf-8"))


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A `signoff` that records what it was handed and exits with $STAND_IN_EXIT."""
    directory = tmp_path / "stand-in"
    directory.mkdir()
    program = directory / "signoff"
    program.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """
            import json, os, sys
            record = {
                "argv": sys.argv[1:],
                "cwd": os.getcwd(),
                "env": {k: v for k, v in os.environ.items() if k.startswith("SIGNOFF_")},
            }
            with open(os.environ["STAND_IN_RECORD"], "w") as handle:
                json.dump(record, handle)
            with open(os.environ["GITHUB_OUTPUT"], "a") as handle:
                handle.write("plan-hash=0123456789abcdef\\nneeds-approval=true\\n")
                handle.write("applied-count=0\\nbundle-uri<<EOF\\ns3://b/k.tar.gz\\nEOF\\n")
            with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as handle:
                handle.write("## signoff plan\\n")
            sys.exit(int(os.environ.get("STAND_IN_EXIT", "0")))
            """
        ),
        encoding="utf-8",
    )
    program.chmod(0o755)
    return directory


def stand_in_env(stand_in: Path, tmp_path: Path, status: int, **extra: str) -> dict[str, str]:
    env = {
        "PATH": f"{stand_in}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "STAND_IN_RECORD": str(tmp_path / "record.json"),
        "STAND_IN_EXIT": str(status),
    }
    env.update(extra)
    return env


def recorded(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "record.json").read_text(encoding="utf-8"))
    return data


REQUIRED = {"gateway-url": "https://gw.example:8080", "database": "ehr"}


def test_plan_mode_hands_the_inputs_over_and_needs_approval_is_not_a_failure(
    tmp_path: Path, stand_in: Path
) -> None:
    (tmp_path / "workspace" / "db").mkdir(parents=True)
    result = run_action(
        tmp_path,
        {**REQUIRED, "mode": "plan", "working-directory": "db", "s3-bucket": "bundles"},
        job_env=stand_in_env(stand_in, tmp_path, 3),
    )
    assert result.returncode == 0, result.stderr
    assert "::notice title=signoff::the plan needs a reviewer's approval" in result.stdout
    record = recorded(tmp_path)
    assert record["argv"] == ["apply"]  # no --fail-on: the project's config decides
    assert record["cwd"] == str(tmp_path / "workspace" / "db")
    env = record["env"]
    assert env["SIGNOFF_PLAN_ONLY"] == "true"
    assert env["SIGNOFF_GATEWAY_URL"] == "https://gw.example:8080"
    assert env["SIGNOFF_DATABASE"] == "ehr"
    assert env["SIGNOFF_AUDIENCE"] == "signoff"
    assert env["SIGNOFF_WAIT"] == "30m"
    assert env["SIGNOFF_S3_BUCKET"] == "bundles"
    # Empty inputs are left to signoff's defaults, not handed over as "".
    for name in ("SIGNOFF_LOCK_WAIT", "SIGNOFF_FAIL_ON", "SIGNOFF_S3_PREFIX"):
        assert name not in env
    assert result.outputs["plan-hash"] == "0123456789abcdef"
    assert result.outputs["bundle-uri"] == "s3://b/k.tar.gz"
    assert "## signoff plan" in result.summary


@pytest.mark.parametrize("status", [1, 2, 3])
def test_apply_mode_passes_every_failure_on(tmp_path: Path, stand_in: Path, status: int) -> None:
    # A job env that says plan-only must not turn an apply into a plan.
    job_env = stand_in_env(stand_in, tmp_path, status, SIGNOFF_PLAN_ONLY="true")
    result = run_action(tmp_path, {**REQUIRED, "mode": "apply"}, job_env=job_env)
    assert result.returncode == status
    assert "SIGNOFF_PLAN_ONLY" not in recorded(tmp_path)["env"]
    assert "::notice" not in result.stdout


def test_plan_mode_passes_a_real_failure_on(tmp_path: Path, stand_in: Path) -> None:
    result = run_action(
        tmp_path,
        {**REQUIRED, "mode": "plan", "fail-on": "warning"},
        job_env=stand_in_env(stand_in, tmp_path, 1),
    )
    assert result.returncode == 1
    record = recorded(tmp_path)
    assert record["argv"] == ["apply", "--fail-on", "warning"]


def test_unknown_mode_is_refused_before_signoff_runs(tmp_path: Path, stand_in: Path) -> None:
    result = run_action(
        tmp_path, {**REQUIRED, "mode": "deploy"}, job_env=stand_in_env(stand_in, tmp_path, 0)
    )
    assert result.returncode == 2
    assert "::error title=signoff::input mode must be plan or apply" in result.stdout
    assert not (tmp_path / "record.json").exists()


def test_inputs_with_shell_in_them_arrive_as_data(tmp_path: Path, stand_in: Path) -> None:
    hostile = 'https://gw.example/$(touch pwned-1)`touch pwned-2`"; touch pwned-3 #'
    result = run_action(
        tmp_path,
        {**REQUIRED, "gateway-url": hostile, "database": "ehr'; touch pwned-4; '"},
        job_env=stand_in_env(stand_in, tmp_path, 0),
    )
    assert result.returncode == 0, result.stderr
    env = recorded(tmp_path)["env"]
    assert env["SIGNOFF_GATEWAY_URL"] == hostile
    assert env["SIGNOFF_DATABASE"] == "ehr'; touch pwned-4; '"
    assert not list(tmp_path.rglob("pwned-*"))


def signoff_apply_help() -> subprocess.CompletedProcess[str]:
    return run([tool("signoff"), "apply", "--help"])


NO_APPLY = (
    "`signoff apply` is not in runner/cli.py yet (issue 11: the lead wires it); "
    "this test runs by itself once `signoff apply --help` exits 0"
)


def test_every_variable_the_templates_hand_over_is_an_apply_option() -> None:
    if signoff_apply_help().returncode != 0:
        pytest.skip(NO_APPLY)
    import click

    from runner.cli import main

    command = main.commands["apply"]
    envvars: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
            envvars.update(names)
    assert envvars >= APPLY_ENV, APPLY_ENV - envvars
    step = next(step for step in action()["runs"]["steps"] if step.get("id") == "signoff")
    assert set(step["env"]) - TEMPLATE_OWN_ENV <= envvars
    gitlab = component_documents()[1][".signoff-base"]["variables"]
    assert set(gitlab) - TEMPLATE_OWN_ENV <= envvars


def test_the_action_with_the_real_signoff_names_the_missing_permission(tmp_path: Path) -> None:
    if signoff_apply_help().returncode != 0:
        pytest.skip(NO_APPLY)
    workspace = tmp_path / "workspace"
    shutil.copytree(SAMPLE, workspace)
    # A GitHub job without `permissions: id-token: write`: no token request variables.
    result = run_action(tmp_path, {**REQUIRED, "mode": "plan"}, workspace=workspace)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "id-token: write" in result.stderr
    assert "Traceback" not in result.stderr


# -- GitLab -----------------------------------------------------------------------------


def test_component_inputs_are_declared_used_and_required_where_needed() -> None:
    header, jobs = component_documents()
    declared = header["spec"]["inputs"]
    used = set(GITLAB_INPUT.findall(component_jobs_text()))
    assert used == set(declared), used ^ set(declared)
    assert {name for name, spec in declared.items() if "default" not in (spec or {})} == {
        "gateway-url",
        "database",
    }
    for name, spec in declared.items():
        if spec and "options" in spec:
            assert spec["default"] in spec["options"], name
    base = jobs[".signoff-base"]
    assert base["id_tokens"] == {"SIGNOFF_ID_TOKEN": {"aud": "$[[ inputs.audience ]]"}}
    assert jobs["signoff-plan"]["allow_failure"] == {"exit_codes": [3]}
    assert jobs["signoff-plan"]["variables"]["SIGNOFF_PLAN_ONLY"] == "true"


def render_component(values: dict[str, str]) -> str:
    header, _ = component_documents()
    defaults = {
        name: str((spec or {}).get("default", ""))
        for name, spec in header["spec"]["inputs"].items()
    }
    defaults.update(values)
    return GITLAB_INPUT.sub(lambda match: defaults[match.group(1)], component_jobs_text())


@pytest.mark.parametrize("apply_from_mr", ["never", "manual"])
def test_check_jsonschema_passes_on_the_gitlab_files(tmp_path: Path, apply_from_mr: str) -> None:
    header_text = COMPONENT.read_text(encoding="utf-8").split("\n---\n", 1)[0]
    header = tmp_path / "component-spec.yml"
    header.write_text(header_text, encoding="utf-8")
    jobs = tmp_path / "component-jobs.yml"
    jobs.write_text(
        render_component({**REQUIRED, "apply-from-mr": apply_from_mr}), encoding="utf-8"
    )
    result = check_jsonschema("vendor.gitlab-ci", header, jobs, GITLAB_INCLUDE, GITLAB_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_refuses_a_bad_gitlab_job(tmp_path: Path) -> None:
    jobs = tmp_path / "component-jobs.yml"
    jobs.write_text(render_component({**REQUIRED, "apply-from-mr": "sometimes"}), encoding="utf-8")
    assert check_jsonschema("vendor.gitlab-ci", jobs).returncode == 1


def test_gitlab_jobs_plan_on_merge_requests_and_apply_on_the_default_branch() -> None:
    for document in (component_documents()[1], load(GITLAB_INCLUDE)):
        plan_rules = document["signoff-plan"]["rules"]
        apply_rules = document["signoff-apply"]["rules"]
        assert plan_rules == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
        assert apply_rules == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
        assert document["signoff-apply"]["resource_group"].startswith("signoff-")
        assert document[".signoff-base"]["id_tokens"]["SIGNOFF_ID_TOKEN"]["aud"]
    # The manual apply-from-MR job is for the project's own branches, never a fork's.
    mr_rule = component_documents()[1]["signoff-apply-mr"]["rules"][0]
    assert "$CI_MERGE_REQUEST_SOURCE_PROJECT_PATH == $CI_PROJECT_PATH" in mr_rule["if"]
