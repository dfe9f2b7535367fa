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


def test_readme_python_examples_run(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    in_python = (REPO / "README.md").read_text().split("\n## In Python\n", 1)[1]
    train, optimizers = re.findall(r"```python\n(.*?)```", in_python, re.S)[:2]
    assert '"data"' in train and "10_000" in train
    namespace: dict = {}
    exec(train.replace('"data"', repr(str(mnist_dir))).replace("10_000", "2"), namespace)  # 2 steps, not 10,000
    assert namespace["model"].generator_step == 2
    images = namespace["images"]
    assert images.shape == (64, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    exec(optimizers, namespace)
    model = namespace["model"]
    g_opt, d_opt = model.configure_optimizers()
    assert model.image_shape == (3, 64, 64) and g_opt.defaults["lr"] == 2e-4 and d_opt.defaults["lr"] == 5e-5


def test_readme_conditional_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    [block] = [b for b in blocks if "labels=7" in b]
    namespace: dict = {}
    exec(block, namespace)
    assert namespace["sevens"].shape == (16, 1, 28, 28) and namespace["mixed"].shape == (64, 1, 28, 28)


def test_readme_generate_evaluate_and_export_flags_exist():
    """Every ``--flag`` the README shows for the after-training commands is a parameter of the command."""
    import inspect

    from lit_gans.evaluate import evaluate
    from lit_gans.generate import generate

    from lit_gans.export import export

    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    for name, function in (("generate", generate), ("evaluate", evaluate), ("export", export)):
        shown = set()
        for line in re.findall(rf"lit-gans {name} ([^\n`]+)", text):
            shown |= set(re.findall(r"--(\w+)", line))
        if f"- `{name}`" in text:  # its bullet of flags
            shown |= set(re.findall(r"`--(\w+)[^`]*`", text.split(f"- `{name}`")[1].split("\n- ")[0]))
        assert shown and shown <= set(inspect.signature(function).parameters) | {"config"}, (name, shown)


def readme_bash_command(after_comment: str) -> list[str]:
    """The README's shell command after ``# <after_comment>``, joined across its ``\\`` continuations and split."""
    import shlex

    text = (REPO / "README.md").read_text()
    match = re.search(rf"# {re.escape(after_comment)}[^\n]*\n((?:[^\n]*\\\n)*[^\n]+)", text)
    assert match, f"README has no command after '# {after_comment}'"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_readme_conditional_own_folder_command_trains_a_conditional_gan(tmp_path, monkeypatch):
    """The README's own class folders command, offline, on a tiny model: the model takes the folders as classes."""
    import torch
    from PIL import Image

    from lit_gans.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no Inception weights: offline features
    monkeypatch.setenv("LIT_GANS_CACHE", str(tmp_path / "cache"))
    folders = tmp_path / "class_folders"
    for label, name in enumerate(("tabby", "tuxedo")):
        (folders / name).mkdir(parents=True)
        for i in range(6):
            pixels = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(10 * label + i))
            pixels = torch.nn.functional.interpolate(pixels[None], size=(24, 24), mode="bilinear")[0]
            Image.fromarray((pixels.permute(1, 2, 0) * 255).byte().numpy()).save(folders / name / f"{i}.png")
    command = readme_bash_command("one subfolder per class")
    assert command[0].endswith("lit-gans")
    args = [a.replace("/path/to/class_folders", str(folders)).replace("configs/", f"{REPO}/configs/") for a in command[1:]]
    cli = main([*args, "--trainer.logger=false", "--data.init_args.batch_size=4", "--model.init_args.generator_width=8",
                "--model.init_args.discriminator_width=8", "--model.init_args.max_generator_steps=2",
                "--trainer.enable_progress_bar=false", "--fid.num_real=8", "--fid.num_fake=8"])  # fmt: skip
    assert cli.trainer.state.finished and cli.model.generator_step == 2
    assert (cli.model.num_classes, cli.model.conditioning) == (2, "projection")
    assert cli.model.sample(2, labels=torch.tensor([0, 1])).shape == (2, 3, 64, 64)
