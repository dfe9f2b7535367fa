"""CI proves the README: .ci/run runs exactly the README's setup and test commands."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_command(after_comment: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"# {after_comment}[^\n]*\n([^\n]+)", text)
    assert match, f"README has no command after '# {after_comment}'"
    return match.group(1).strip()


def test_ci_runs_the_readme_setup_and_test_commands():
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert readme_command("set everything up") in ci_lines
    assert readme_command("run the tests") in ci_lines


def test_readme_main_job_config_exists():
    command = readme_command("train a DCGAN on MNIST")
    config = re.search(r"--config (\S+)", command).group(1)
    assert (REPO / config).exists()
